// Package gadget runs gadgets: the stage lifecycle (Instantiate,
// PreStart, Start, Stop, PostStop, Close), the gadget context every stage
// shares, params and the catalog of what a gadget offers.
//
// A Runtime holds Stages sorted by priority and declared
// dependencies. Info runs only Instantiate and Close; Run runs every step in
// order and tears down in reverse, also when a step fails midway: every
// instance that started is stopped, every instance created is closed.
//
// Data sources and fields live in pkg/gadget/datasource; the eBPF stage in
// pkg/gadget/ebpfstage; the enricher, filter, limiter and sinks in their
// own packages under pkg/gadget/. This package knows nothing of eBPF or
// Kubernetes; pkg/trace drives it from Trace resources.
package gadget
