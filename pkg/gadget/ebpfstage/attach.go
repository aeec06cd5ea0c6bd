package ebpfstage

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// attach attaches prog according to its ELF section. Iterator programs
// return a nil link: snapshotters run them on demand.
func attach(section string, prog *ebpf.Program) (link.Link, error) {
	kind, target, _ := strings.Cut(section, "/")
	switch kind {
	case "tracepoint", "tp":
		group, name, ok := strings.Cut(target, "/")
		if !ok {
			return nil, fmt.Errorf("expected tracepoint/<group>/<name>")
		}
		return link.Tracepoint(group, name, prog, nil)
	case "raw_tracepoint", "raw_tp":
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: target, Program: prog})
	case "kprobe", "kretprobe":
		if !haveKprobes() {
			return nil, fmt.Errorf("attach %s: %w: this kernel has no kprobes (Linux %s built without CONFIG_KPROBES: neither %s nor %s exists); use a tracepoint or raw_tracepoint section", section, ebpf.ErrNotSupported, kernelRelease(), kprobePMU, kprobeEvents)
		}
		var l link.Link
		var err error
		if kind == "kprobe" {
			l, err = link.Kprobe(target, prog, nil)
		} else {
			l, err = link.Kretprobe(target, prog, nil)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("kernel %s has no function %s to probe (not in /proc/kallsyms, or not probeable): %w", kernelRelease(), target, err)
		}
		return l, err
	case "fentry", "fexit", "tp_btf", "fmod_ret":
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case "iter":
		return nil, nil
	}
	return nil, fmt.Errorf("section kind %q cannot be attached (supported: tracepoint, raw_tracepoint, kprobe, kretprobe, fentry, fexit, tp_btf, iter)", kind)
}

// Where the kernel offers kprobes: the perf PMU, or the tracefs interface
// cilium/ebpf falls back to.
const (
	kprobePMU    = "/sys/bus/event_source/devices/kprobe"
	kprobeEvents = "/sys/kernel/tracing/kprobe_events"
)

func haveKprobes() bool {
	for _, p := range []string{kprobePMU, kprobeEvents} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func sortParams(p []gadget.ParamDesc) {
	sort.Slice(p, func(a, b int) bool { return p[a].Key < p[b].Key })
}

// mountFilesystems mounts tracefs and bpffs where they belong when they are
// missing; tracepoint attachment needs tracefs. It fails quietly when the
// process may not mount (the caller logs it).
func mountFilesystems() error {
	var errs []error
	if err := mountIfMissing("/sys/kernel/tracing", "tracefs", unix.TRACEFS_MAGIC); err != nil {
		errs = append(errs, err)
	}
	if err := mountIfMissing("/sys/fs/bpf", "bpf", unix.BPF_FS_MAGIC); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func mountIfMissing(dir, fstype string, magic int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && int64(st.Type) == magic {
		return nil
	} else if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mount %s: %s does not exist", fstype, dir)
	}
	if err := unix.Mount(fstype, dir, fstype, 0, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, dir, err)
	}
	return nil
}
