// Package kubeevents watches Kubernetes for hooks' kubernetes bindings: one
// monitor per binding, built from dynamic informers with label, field, name
// and namespace selectors and a jqFilter; snapshots; Synchronization and
// Event delivery on a channel; and pause/resume.
//
// It does not run hooks; it only reports what changed.
//
// Guarantees:
//
//   - A started monitor sends one Synchronization event (when its Config
//     asks for it) holding every matching object, after its initial list
//     and before any Event. Changes that happen during the list are folded
//     into the Synchronization, not sent as Events.
//   - Events of one monitor leave in the order its snapshot changed; all
//     monitors share one channel (Monitors.Events).
//   - A Modified event is sent only when the object's jqFilter result (or,
//     without a filter, its resourceVersion) changed.
//   - Nothing is dropped: while delivery is paused or nobody reads, events
//     wait in memory, in order.
//   - A kind whose apiVersion names an API group that is not served at all
//     (a CRD created later) is waited for, with backoff, a log line per
//     attempt and the reason in WaitingForKind; any other unknown kind (a
//     kind missing from a served group version, a group served at other
//     versions only) is an error from AddMonitor.
//   - A monitor whose Config names a service account lists and watches
//     as it (impersonated), through that account's own client; a list or
//     watch the API server refuses is reported by Forbidden while it
//     lasts, logged once per verb, and retried with backoff.
//   - Monitors owns every goroutine it starts; Stop and StopMonitor wait
//     for them. No lock is held while calling into other packages.
package kubeevents
