// Package hookhost hosts the hooks of the packages the package manager
// has prepared: it implements manager.HookRunner (Prepare, Enable,
// RunBinding, ...) and hooks.RunObserver over pkg/hooks.
//
// It owns each package's values store, the identity its hooks and
// bindings act as (pkg/identity: a package's service account gives its
// hooks that account's credentials and its monitors that account's
// watches), the registration of its kubernetes monitors and cron
// entries, the Synchronization runs a start waits for, the pausing of
// the package's Helm drift monitor while its hooks run, the merging of
// queued runs of one hook and the compaction of the kube events that
// wait for them (pending.go: per object, per binding, per run), and the
// runs' counts and output tails for the
// dump. The coordinator's event loop hands it cron
// triggers, kube events and queue events.
//
// It must not start goroutines, own queues, Kubernetes clients or Helm
// releases: every service it uses comes in through Options as a small
// interface, and the coordinator wires and stops them.
package hookhost
