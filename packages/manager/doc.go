// Package manager holds the state of every installed package (phase,
// enablement and reason, version, digest, values, hooks, catalog) and
// makes the tasks that move it: Download, Install, Load, ApplySettings,
// Startup, Run, Disable and Uninstall, each a queue.Task for the package's
// main queue.
//
// Plan says which tasks an Update or a Remove needs; the caller enqueues
// them in order. Tasks read and write the package's state under the
// manager's lock but call the fetcher, Helm (Releaser) and hooks
// (HookRunner) outside it. Without a Releaser or HookRunner, Run and the
// hook steps apply nothing, and the state machine still moves.
//
// The manager does not own queues, watch Kubernetes or write status; the
// GadgetPackage controller maps State to status.
package manager
