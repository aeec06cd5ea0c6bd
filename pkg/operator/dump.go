package operator

import (
	"time"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// Dump is the operator's whole state, as `gadgetpm dump` prints it.
type Dump struct {
	// Node is the node this replica runs for (its --node-name), so that a
	// dump read through kubectl exec says which node it describes.
	Node string `json:"node,omitempty" yaml:"node,omitempty"`
	// Time the dump was taken.
	Time time.Time `json:"time" yaml:"time"`
	// Packages by key, sorted.
	Packages []PackageDump `json:"packages" yaml:"packages"`
	// Queues holds every live queue, packages' and others'.
	Queues queue.Dump `json:"queues" yaml:"queues"`
	// Schedules are the cron entries of hooks' schedule bindings.
	Schedules []cron.EntryStatus `json:"schedules,omitempty" yaml:"schedules,omitempty"`
	// Enablement is the scheduler's verdict per package.
	Enablement []scheduler.Status `json:"enablement,omitempty" yaml:"enablement,omitempty"`
	// PendingKubeEvents counts Kubernetes events waiting for delivery.
	PendingKubeEvents int `json:"pendingKubeEvents" yaml:"pendingKubeEvents"`
	// Gadgets are the gadget runs loaded on this replica's node, each with
	// the Traces it serves (see WithNodeRuns).
	Gadgets []trace.RunInfo `json:"gadgets,omitempty" yaml:"gadgets,omitempty"`
}

// PackageDump is one package.
type PackageDump struct {
	Key     string `json:"key" yaml:"key"`
	Package string `json:"package" yaml:"package"`
	Phase   string `json:"phase" yaml:"phase"`
	Enabled bool   `json:"enabled" yaml:"enabled"`
	Reason  string `json:"reason,omitempty" yaml:"reason,omitempty"`
	Version string `json:"version,omitempty" yaml:"version,omitempty"`
	Digest  string `json:"digest,omitempty" yaml:"digest,omitempty"`
	// HelmRevision of the package's release; 0 before the first Run.
	HelmRevision int `json:"helmRevision,omitempty" yaml:"helmRevision,omitempty"`
	// Values in effect: settings over defaults, with hooks' patches.
	Values map[string]any `json:"values,omitempty" yaml:"values,omitempty"`
	// Hooks with their bindings and last run.
	Hooks []HookDump `json:"hooks,omitempty" yaml:"hooks,omitempty"`
	// Queues of the package: its main queue and the custom ones its hooks
	// name.
	Queues []string `json:"queues,omitempty" yaml:"queues,omitempty"`
	// Subscriptions are the package's Kubernetes monitors.
	Subscriptions []SubscriptionDump `json:"subscriptions,omitempty" yaml:"subscriptions,omitempty"`
}

// HookDump is one hook of a package.
type HookDump struct {
	Name     string   `json:"name" yaml:"name"`
	Bindings []string `json:"bindings,omitempty" yaml:"bindings,omitempty"`
	// LastRun is when the hook last finished; nil before its first run.
	LastRun *time.Time `json:"lastRun,omitempty" yaml:"lastRun,omitempty"`
	// LastError of the last run; empty after a success.
	LastError string `json:"lastError,omitempty" yaml:"lastError,omitempty"`
	// Runs counts finished runs.
	Runs int `json:"runs" yaml:"runs"`
}

// SubscriptionDump is one kubernetes binding's monitor.
type SubscriptionDump struct {
	// Monitor ID: "<package key>/<hook>/<binding>".
	Monitor string `json:"monitor" yaml:"monitor"`
	Hook    string `json:"hook" yaml:"hook"`
	Binding string `json:"binding" yaml:"binding"`
	// APIVersion and Kind watched.
	APIVersion string `json:"apiVersion" yaml:"apiVersion"`
	Kind       string `json:"kind" yaml:"kind"`
	// Synced is true once the monitor listed its objects.
	Synced bool `json:"synced" yaml:"synced"`
	// Objects in its snapshot.
	Objects int `json:"objects" yaml:"objects"`
}

// Snapshots answers /hooks/<key>/<hook>/snapshots: the current objects of
// each kubernetes binding of one hook, by binding name.
type Snapshots map[string][]kubeevents.ObjectAndFilterResult

// WithNodeRuns returns a DebugSource whose dumps also list the gadget runs
// that runs reports (the node's Trace controller's Runs): the coordinator
// knows the packages, the node role knows what is loaded on this node, and
// one dump shows both.
func WithNodeRuns(src DebugSource, runs func() []trace.RunInfo) DebugSource {
	return nodeRuns{DebugSource: src, runs: runs}
}

type nodeRuns struct {
	DebugSource
	runs func() []trace.RunInfo
}

func (n nodeRuns) Dump() Dump {
	d := n.DebugSource.Dump()
	d.Gadgets = n.runs()
	return d
}

// WithNode returns a DebugSource whose dumps name the node the replica
// runs for.
func WithNode(src DebugSource, node string) DebugSource {
	return withNode{DebugSource: src, node: node}
}

type withNode struct {
	DebugSource
	node string
}

func (n withNode) Dump() Dump {
	d := n.DebugSource.Dump()
	d.Node = n.node
	return d
}
