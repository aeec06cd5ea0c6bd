package debugserver

import (
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/dump"
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
	// Values in effect: settings over defaults, with hooks' patches. The
	// server shows them through RedactValues.
	Values map[string]any `json:"values,omitempty" yaml:"values,omitempty"`
	// SecretValues are the paths into Values that the package's schema
	// marks "x-secret": true (loader.Package.SecretValues). The server
	// redacts them; they are not part of the answer.
	SecretValues [][]string `json:"-" yaml:"-"`
	// Hooks with their bindings and last run.
	Hooks []dump.Hook `json:"hooks,omitempty" yaml:"hooks,omitempty"`
	// Queues of the package: its main queue and the custom ones its hooks
	// name.
	Queues []string `json:"queues,omitempty" yaml:"queues,omitempty"`
	// Subscriptions are the package's Kubernetes monitors.
	Subscriptions []dump.Subscription `json:"subscriptions,omitempty" yaml:"subscriptions,omitempty"`
}

// WithNodeRuns returns a Source whose dumps also list the gadget runs
// that runs reports (the node's Trace controller's Runs): the coordinator
// knows the packages, the node role knows what is loaded on this node, and
// one dump shows both.
func WithNodeRuns(src Source, runs func() []trace.RunInfo) Source {
	return nodeRuns{Source: src, runs: runs}
}

type nodeRuns struct {
	Source
	runs func() []trace.RunInfo
}

func (n nodeRuns) Dump() Dump {
	d := n.Source.Dump()
	d.Gadgets = n.runs()
	return d
}

// WithNode returns a Source whose dumps name the node the replica
// runs for.
func WithNode(src Source, node string) Source {
	return withNode{Source: src, node: node}
}

type withNode struct {
	Source
	node string
}

func (n withNode) Dump() Dump {
	d := n.Source.Dump()
	d.Node = n.node
	return d
}

// NoPackages is the Source of a process without the cluster role: its
// dumps hold no packages, queues or hooks (WithNodeRuns and WithNode add
// the node's part).
type NoPackages struct{}

var _ Source = NoPackages{}

// Dump is empty but for the time.
func (NoPackages) Dump() Dump { return Dump{Time: time.Now()} }

// Package finds no package.
func (NoPackages) Package(string) (PackageDump, bool) { return PackageDump{}, false }

// HookSnapshots finds no hook.
func (NoPackages) HookSnapshots(string, string) (dump.Snapshots, bool) { return nil, false }
