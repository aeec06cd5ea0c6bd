// Package bpf holds the eBPF side of gadgets; it has no Go code of its own.
//
//   - include/gadget/macros.h, types.h: what gadget authors include to
//     declare tracers, snapshotters and params, and the field types the
//     runtime recognises (docs/gadgets.md).
//   - gadgets/<name>/program.bpf.c and program.bpf.o: the bundled gadgets,
//     source and compiled object, also copied into charts/packages/.
//   - testdata/: objects the runtime's tests load (a program the verifier
//     refuses, an object without BTF, a ring buffer that overflows, one
//     program per attachable section kind).
//   - build/: vmlinux.h generated from the running kernel's BTF (ignored).
//
// `make bpf` (hack/bpf-build.sh) rebuilds every object with clang.
// Loading and attaching programs belongs to pkg/gadget/ebpfoperator.
package bpf
