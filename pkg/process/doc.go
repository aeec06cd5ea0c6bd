// Package process runs the operator process (`gadgetpm operator`, and
// both roles of `gadgetpm dev`) in the roles Options.Role names: the node
// role (pkg/noderole: the Trace controller and the Stream hub, on every
// replica, never waiting for the Lease) and the cluster role (the
// coordinator and the GadgetPackage and PackageRepository controllers, in
// a controller manager of its own, run while this process holds the
// Lease), with health and readiness probes, the metrics endpoint and the
// debug server.
//
// It runs the Lease election itself (client-go's leader elector) so
// that the cluster role always stops in order before the Lease is given
// up, on SIGTERM and when the Lease is lost. It turns options into
// services and hands them to the managers; what the services do belongs
// to their own packages. Only the process entry points (cmd/gadgetpm,
// internal/devenv) import it.
package process
