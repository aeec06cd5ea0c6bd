// Package ebpfstage is the gadget runtime's eBPF stage: it reads a
// gadget's program.bpf.o with cilium/ebpf (BTF required), finds the tracers,
// snapshotters, interval sources, fallback programs and params declared
// with the macros of bpf/include/gadget/ through their marker variables,
// turns event structs into data-source fields, loads the programs (showing
// the verifier's log when the kernel refuses one, and leaving out a
// refused program that has a fallback), attaches them by section, reads
// ring buffers, task iterators and interval maps into records, and counts
// lost samples.
//
// It also reads Inspektor Gadget's gadget ABI (bpf/include/igabi/gadget.h):
// tracers, snapshotters, map iterators, optional programs and params named
// by symbol (gadget_tracer_<name>___<map>___<struct>,
// gadget_snapshotter_<name>___<struct>___<prog>..., igiter.go;
// gadget_mapiter_<name>___<map>, igmapiter.go;
// gadget_program_optional_<prog>, optional.go; gadget_param_<var>), the
// perf event array its tracers fall back to without ring buffers (perf.go),
// its special typedefs, nested record structs, its
// mount-namespace filter map (filled from the "mntns" param, which the
// Trace controller sets from a Trace's spec.filter) and its
// gadget.yaml layout (params under params.ebpf, field annotations).
//
// Catalog reads what an object offers without touching the kernel; the
// package loader uses it to fill a GadgetPackage's status.catalog.
//
// It does not filter, enrich or print records; other stages do.
package ebpfstage
