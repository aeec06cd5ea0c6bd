package ebpfstage

import (
	"bytes"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// kernelHasBTF reports whether the kernel exposes its own BTF
// (/sys/kernel/btf/vmlinux).
func kernelHasBTF() bool {
	_, err := btf.LoadKernelSpec()
	return err == nil
}

// collectionOptions are the options the gadget's collection is loaded
// with: on a kernel without BTF of its own, the BTF of the gadget's
// btfgen archive for this kernel, as the kernel types CO-RE relocations
// are resolved against.
func (i *instance) collectionOptions(g gadget.Gadget) (ebpf.CollectionOptions, error) {
	var opts ebpf.CollectionOptions
	if len(g.BTFGen) == 0 || i.op.opts.KernelHasBTF() {
		return opts, nil
	}
	host, err := i.op.opts.Host()
	if err != nil {
		return opts, fmt.Errorf("load gadget %s: the kernel has no BTF (/sys/kernel/btf/vmlinux), and its btfgen archive is keyed by distribution: %w", i.name, err)
	}
	b, err := gadget.KernelBTF(g.BTFGen, host)
	if err != nil {
		return opts, fmt.Errorf("load gadget %s: the kernel has no BTF (/sys/kernel/btf/vmlinux): %w", i.name, err)
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(b))
	if err != nil {
		return opts, fmt.Errorf("load gadget %s: BTF %s of its btfgen archive: %w", i.name, host.BTFPath(), err)
	}
	opts.Programs.KernelTypes = spec
	return opts, nil
}
