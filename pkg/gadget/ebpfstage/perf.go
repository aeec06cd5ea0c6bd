package ebpfstage

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/perf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// Inspektor Gadget's buffer helpers (igabi/gadget.h) send records through
// a BPF ring buffer where the kernel has the ring-buffer helpers, and
// through a perf event array where it does not (before 5.8): they ask the
// kernel's BTF, through a CO-RE relocation, whether enum bpf_func_id has
// BPF_FUNC_ringbuf_reserve. On such kernels the runtime turns each
// tracer's ring buffer into a perf event array before loading and reads
// it with a perf reader. Options.PerfEventArray forces this path on any
// kernel: the relocation is then resolved against a copy of the kernel's
// BTF without the ring-buffer helpers.

// minPerfBuffer is the smallest per-CPU perf buffer: 64 KiB.
const minPerfBuffer = 64 << 10

// perfTracers says which Inspektor Gadget tracers of the run read a perf
// event array instead of their ring buffer, and why ("" for none).
func (i *instance) perfTracers() (string, error) {
	var ig bool
	for _, t := range i.spec.tracers {
		ig = ig || t.ig
	}
	switch {
	case !ig:
		return "", nil
	case i.op.opts.PerfEventArray:
		return "Options.PerfEventArray is set", nil
	}
	err := features.HaveMapType(ebpf.RingBuf)
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Sprintf("kernel %s has no BPF ring buffers (added in 5.8)", kernelRelease()), nil
	}
	return "", fmt.Errorf("load gadget %s: probe for BPF ring buffers: %w", i.name, err)
}

// usePerfEventArrays turns the ring buffers of the run's Inspektor Gadget
// tracers in spec into perf event arrays (one buffer per CPU) and returns
// the kernel types the programs' CO-RE relocations must see.
func (i *instance) usePerfEventArrays(spec *ebpf.CollectionSpec) (*btf.Spec, error) {
	for j, t := range i.spec.tracers {
		if !t.ig {
			continue
		}
		m := spec.Maps[t.mapName]
		if m.Type == ebpf.RingBuf {
			i.spec.tracers[j].perfBuffer = max(int(m.MaxEntries), minPerfBuffer)
			m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags = ebpf.PerfEventArray, 4, 4, 0, 0
			m.Key, m.Value = nil, nil
		}
		i.spec.tracers[j].perf = true
	}
	if !i.op.opts.PerfEventArray {
		return nil, nil // the kernel's own BTF lacks the ring-buffer helpers
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load gadget %s: read the kernel's BTF to force perf event arrays: %w", i.name, err)
	}
	kernel = kernel.Copy()
	var fn *btf.Enum
	if err := kernel.TypeByName("bpf_func_id", &fn); err != nil {
		return nil, fmt.Errorf("load gadget %s: the kernel's BTF has no enum bpf_func_id: %w", i.name, err)
	}
	kept := fn.Values[:0:0]
	for _, v := range fn.Values {
		if !strings.HasPrefix(v.Name, "BPF_FUNC_ringbuf_") {
			kept = append(kept, v)
		}
	}
	fn.Values = kept
	return kernel, nil
}

// newPerfReader opens the perf reader of a tracer whose map is a perf
// event array.
func (i *instance) newPerfReader(t tracer) (*perf.Reader, error) {
	size := max(t.perfBuffer, minPerfBuffer)
	rd, err := perf.NewReader(i.coll.Maps[t.mapName], size)
	if err != nil {
		return nil, fmt.Errorf("read perf event array %s: %w", t.mapName, err)
	}
	return rd, nil
}

// readPerf emits every sample of one perf event array until the reader is
// flushed or closed, and counts the samples the kernel dropped.
func (i *instance) readPerf(gctx *gadget.Context, t tracer, rd *perf.Reader) {
	defer i.wg.Done()
	var sample perf.Record
	i.readSamples(gctx, t, "perf event array", rd.SetDeadline, func() ([]byte, uint64, error) {
		err := rd.ReadInto(&sample)
		return sample.RawSample, sample.LostSamples, err
	})
}
