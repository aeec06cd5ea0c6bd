// Package coordinator wires the cluster role. New constructs its services
// in dependency order (queue service and crontab, Helm release
// service, object patcher, Kubernetes event monitors, scheduler, hook host,
// package manager, GadgetPackage and PackageRepository controllers); Start
// runs the event loop, which hands cron triggers, kube events and queue
// events to the hook host, reports of missing release objects to the
// package's queue as a Run, drift checks to the package manager and the
// GadgetPackage controller (the Drifted condition), and scheduler and
// queue events to the GadgetPackage controller; Stop
// stops the services in the reverse order of what feeds what.
//
// Besides wiring it holds the adapters the services meet through (Helm
// releases for the package manager, the wait for nodes to stop a package's
// Traces before its release is deleted, hook runs into package status),
// and it is the debug server's Source, reading the dump from the services.
//
// It owns no domain logic: what a package, a hook or a release is belongs
// to packages/, packages/hookhost, pkg/hooks and pkg/nelm. Only the
// process runner (pkg/process) and the process entry points import it.
package coordinator
