// Package gadget runs gadgets: the data-operator lifecycle (Instantiate,
// PreStart, Start, Stop, PostStop, Close), typed data sources and fields, the
// eBPF operator that loads and attaches program.bpf.o, enrichers, filters,
// limiters and sinks.
//
// It knows nothing of Kubernetes; pkg/trace drives it from Trace resources.
package gadget
