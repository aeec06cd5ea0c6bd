// Package bpf holds the eBPF side of gadgets; it has no Go code of its own.
//
//   - include/gadget/macros.h, types.h: what gadget authors include to
//     declare tracers, snapshotters, interval sources, fallback programs
//     and params, and the field types the runtime recognises
//     (docs/gadgets.md).
//   - gadgets/<name>/program.bpf.c and program.bpf.o: the bundled gadgets,
//     source and compiled object, also copied into charts/packages/.
//   - testdata/: objects the runtime's tests load (a program the verifier
//     refuses, an object without BTF, a ring buffer that overflows, one
//     program per attachable section kind, an fentry program with a
//     kprobe fallback, programs on a kernel function that does not exist).
//   - build/: vmlinux.h generated from the running kernel's BTF (ignored).
//
// `make bpf` (hack/bpf-build.sh) rebuilds every object with clang.
// Loading and attaching programs belongs to pkg/gadget/ebpfstage.
package bpf
