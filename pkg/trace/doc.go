// Package trace is the node-local Trace controller: it performs the
// operations requested through the gadget.kinvolk.io/operation annotation,
// runs scheduled traces, shares loaded gadgets between Traces on a node and
// writes events to the chosen output. It confines each Trace to the pods
// of its own namespace unless the cluster admin labelled that namespace
// with PrivilegedTracesLabel (confine.go).
//
// It runs gadgets through pkg/gadget and never loads eBPF itself. It runs
// on every node, so it links no Helm and no cluster-role package handling:
// archives come by digest through packages/pull (internal/layering), and
// CacheOptions keep a node-role process's cache small.
package trace
