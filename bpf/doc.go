// Package bpf holds the eBPF C sources of the bundled gadgets (bpf/gadgets/),
// the headers gadget authors include (bpf/include/gadget/) and the compiled
// objects, rebuilt by `make bpf`.
//
// Loading and attaching programs belongs to pkg/gadget.
package bpf
