// Package operator is the coordinator: it wires the services (queues, cron,
// Helm releases, object patcher, Kubernetes events, package manager, event
// handler) in dependency order, exposes Update, Remove, Stop and Dump, turns
// cron triggers and Kubernetes events into hook-run tasks, and serves the
// debug socket behind `gadgetpm dump`.
//
// It owns no domain logic of its own: what a package, a hook or a release
// is belongs to packages/, pkg/hooks and pkg/nelm.
package coordinator
