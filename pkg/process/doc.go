// Package process runs the operator process (`gadgetpm operator`, and
// both roles of `gadgetpm dev`): one controller-runtime Manager with the
// cluster role (the coordinator and the GadgetPackage and
// PackageRepository controllers, on the Lease holder only) and the node
// role (the Trace controller, on every replica), health and readiness
// probes, the metrics endpoint with Stream-mode Trace outputs, leader
// election and the debug server.
//
// It turns options into services and hands them to the Manager; what the
// services do belongs to their own packages. Only the process entry
// points (cmd/gadgetpm, internal/devenv) import it.
package process
