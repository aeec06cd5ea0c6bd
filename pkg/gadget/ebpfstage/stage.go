package ebpfstage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Name is the stage's name; other stages may depend on it.
const Name = "ebpf"

// Priority is the stage's priority: first, because it registers the data
// sources everything else subscribes to.
const Priority = 0

// Options configure the stage. The zero value is the default.
type Options struct {
	// NoMount disables mounting tracefs (/sys/kernel/tracing) and bpffs
	// (/sys/fs/bpf) when they are missing. Default: mount them when the
	// process may.
	NoMount bool
	// VerifierLogLines is how many trailing lines of the verifier's log an
	// error shows. Default: 20.
	VerifierLogLines int
	// PollInterval is how often ring buffers are read when the program did
	// not wake the reader (gadget_submit wakes it once an eighth of the
	// ring is filled): the longest an event waits. Default: 50ms.
	PollInterval time.Duration
	// PerfEventArray makes the tracers of Inspektor Gadget's ABI send
	// their records through a perf event array, as they do on kernels
	// without BPF ring buffers (before 5.8), even where the kernel has
	// ring buffers. Default: ring buffers where the kernel has them.
	PerfEventArray bool
	// KernelHasBTF and Host decide whether, and which, BTF of a gadget's
	// btfgen archive (gadget.Gadget.BTFGen) stands in for the kernel's.
	// Defaults: whether /sys/kernel/btf/vmlinux loads, gadget.ThisHost.
	KernelHasBTF func() bool
	Host         func() (gadget.Host, error)
	// EtcDir holds the passwd and group files that name the user and
	// group ids of Inspektor Gadget's gadget_uid and gadget_gid fields.
	// Default: the host's, /proc/1/root/etc (the /etc of PID 1: the
	// host's init when the process shares the host's PID namespace, as
	// the node role's DaemonSet does), else /etc.
	EtcDir string
}

// Stage loads and runs a gadget's eBPF object. It is stateless and safe
// for concurrent use; every run gets its own instance.
type Stage struct {
	opts Options
	ids  *idNames // shared by runs: the files are read once
}

var (
	_ gadget.Stage        = (*Stage)(nil)
	_ gadget.PreStarter   = (*instance)(nil)
	_ gadget.Starter      = (*instance)(nil)
	_ gadget.Stopper      = (*instance)(nil)
	_ gadget.Closer       = (*instance)(nil)
	_ gadget.ExtraParamer = (*instance)(nil)
)

// New returns the stage.
func New(opts Options) *Stage {
	if opts.VerifierLogLines <= 0 {
		opts.VerifierLogLines = 20
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	if opts.KernelHasBTF == nil {
		opts.KernelHasBTF = kernelHasBTF
	}
	if opts.Host == nil {
		opts.Host = gadget.ThisHost
	}
	etc := []string{opts.EtcDir}
	if opts.EtcDir == "" {
		etc = []string{"/proc/1/root/etc", "/etc"}
	}
	return &Stage{opts: opts, ids: newIDNames(etc, time.Now)}
}

// Name implements gadget.Stage.
func (o *Stage) Name() string { return Name }

// Priority implements gadget.Stage.
func (o *Stage) Priority() int { return Priority }

// Instantiate reads the gadget's object and metadata, registers
// its data sources and applies the params it declares. It opts out of runs
// without an object.
func (o *Stage) Instantiate(gctx *gadget.Context, params gadget.Params) (gadget.StageInstance, error) {
	g := gctx.Gadget()
	if g.Object == nil {
		return nil, nil
	}
	gs, err := parseSpec(g.Name, g.Object, g.Metadata)
	if err != nil {
		return nil, err
	}
	for key, p := range gs.params {
		if v, ok := params[key]; ok {
			if err := p.set(v); err != nil {
				return nil, fmt.Errorf("gadget %s: %w", g.Name, err)
			}
		}
	}
	for _, t := range gs.tracers {
		if err := gctx.RegisterDataSource(t.ds); err != nil {
			return nil, err
		}
	}
	for _, s := range gs.snapshotters {
		if err := gctx.RegisterDataSource(s.ds); err != nil {
			return nil, err
		}
	}
	every := defaultInterval
	for _, iv := range gs.intervals {
		if err := gctx.RegisterDataSource(iv.ds); err != nil {
			return nil, err
		}
	}
	if len(gs.intervals) > 0 {
		if _, clash := gs.params[IntervalParam]; clash {
			return nil, fmt.Errorf("gadget %s: GADGET_PARAM(%s) clashes with the runtime's param of that name for interval sources; rename the variable", g.Name, IntervalParam)
		}
		if v, ok := params[IntervalParam]; ok {
			d, err := time.ParseDuration(v)
			if err != nil || d < minInterval {
				return nil, fmt.Errorf("gadget %s: param %s: %q is not a duration of at least %s (e.g. 1s, 500ms)", g.Name, IntervalParam, v, minInterval)
			}
			every = d
		}
	}
	var mi mapIterConfig
	if len(gs.mapIters) > 0 {
		for _, m := range gs.mapIters {
			if err := gctx.RegisterDataSource(m.ds); err != nil {
				return nil, err
			}
		}
		if mi, err = parseMapIterConfig(gs, params); err != nil {
			return nil, fmt.Errorf("gadget %s: %w", g.Name, err)
		}
	}
	var mntns []uint64
	var filter *MntNsFilter
	if gs.mntnsFilter {
		if _, clash := gs.params[MntNsParam]; clash {
			return nil, fmt.Errorf("gadget %s: GADGET_PARAM(%s) clashes with the runtime's param of that name for the mount-namespace filter; rename the variable", g.Name, MntNsParam)
		}
		var on bool
		if mntns, on, err = parseMntNs(params[MntNsParam]); err != nil {
			return nil, fmt.Errorf("gadget %s: %w", g.Name, err)
		}
		if on {
			if err := gs.coll.Variables[igFilterVar].Set(true); err != nil {
				return nil, fmt.Errorf("gadget %s: turn on the mount-namespace filter (%s): %w", g.Name, igFilterVar, err)
			}
			filter = newMntNsFilter(g.Name, mntns)
			gctx.SetVar(VarMntNsFilter, filter)
		}
	}
	clock, err := bootClock()
	if err != nil {
		return nil, err
	}
	gctx.SetVar(gadget.VarClock, clock)
	in := &instance{op: o, spec: gs, name: g.Name, every: every, mapIter: mi, filter: filter, dropped: map[string]error{}}
	in.subscribeDerived(gctx)
	return in, nil
}

// IntervalParam is the param that sets how often interval data sources
// (GADGET_INTERVAL) emit; only gadgets with one have it.
const IntervalParam = "interval"

const (
	defaultInterval = time.Second
	minInterval     = 10 * time.Millisecond
)

func bootClock() (datasource.Clock, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return datasource.Clock{}, fmt.Errorf("read boot time: %w", err)
	}
	return datasource.Clock{BootTime: time.Now().Add(-time.Duration(ts.Nano()))}, nil
}

// instance is one run's state. The owner is the runtime: PreStart, Start,
// Stop and Close are called from one goroutine; the readers' goroutines are
// started in Start and waited for in Stop.
type instance struct {
	op   *Stage
	name string
	spec *gadgetSpec

	every   time.Duration // how often interval sources emit
	mapIter mapIterConfig // how map iterators fetch
	// filter is the mount-namespace filter when it is on, else nil
	filter *MntNsFilter
	// fields fills the derived fields of Inspektor Gadget's types (user
	// names, stacks); its maps are set by PreStart
	fields *stackFormatter
	// dropped holds the programs of GADGET_FALLBACK pairs and the optional
	// programs left out of the collection because the kernel refused
	// them, and why
	dropped map[string]error

	coll    *ebpf.Collection
	links   []link.Link
	readers []bufferReader
	stopIv  chan struct{} // closed by Stop: interval emitters drain and end
	abortIv chan struct{} // closed by Close: interval emitters end
	wg      sync.WaitGroup
}

func (i *instance) Name() string { return Name }

// ExtraParams are the object's GADGET_PARAMs.
func (i *instance) ExtraParams(*gadget.Context) []gadget.ParamDesc {
	out := make([]gadget.ParamDesc, 0, len(i.spec.params))
	for _, p := range i.spec.params {
		out = append(out, p.desc)
	}
	if i.spec.mntnsFilter {
		out = append(out, gadget.ParamDesc{Key: MntNsParam, Type: "string",
			Description: "Report only events of these mount namespaces (inode numbers, comma-separated), filtered in the kernel; empty: every namespace; none: no event."})
	}
	if len(i.spec.mapIters) > 0 {
		out = append(out, mapIterParams()...)
	}
	if len(i.spec.intervals) > 0 {
		out = append(out, gadget.ParamDesc{Key: IntervalParam, Type: "duration", Default: defaultInterval.String(),
			Description: "How often the gadget's interval data sources emit what they gathered."})
	}
	sortParams(out)
	return out
}

// PreStart loads every map and program into the kernel.
func (i *instance) PreStart(gctx *gadget.Context) error {
	if !i.op.opts.NoMount {
		if err := mountFilesystems(); err != nil {
			gctx.Logger().Warn("mount kernel filesystems", "error", err)
		}
	}
	// Kernels before 5.11 charge maps and programs to RLIMIT_MEMLOCK, whose
	// default (64 KiB or 8 MiB) is smaller than a ring buffer; later
	// kernels use memory cgroups, and this does nothing there.
	if err := rlimit.RemoveMemlock(); err != nil {
		if errors.Is(err, os.ErrPermission) {
			// The probe behind it needs bpf() itself: most often the
			// process may not load eBPF at all.
			return fmt.Errorf("load gadget %s: lift RLIMIT_MEMLOCK: %w (the process may not load eBPF: it needs root, or CAP_BPF and CAP_PERFMON, plus CAP_SYS_RESOURCE on kernels before 5.11; in a pod, see the node role's capabilities in docs/install.md)", i.name, err)
		}
		return fmt.Errorf("load gadget %s: lift RLIMIT_MEMLOCK (this kernel charges eBPF memory to it): %w", i.name, err)
	}
	// A program of a GADGET_FALLBACK pair that the kernel refuses is left
	// out and the collection loaded again, at most once per pair member.
	spec := i.spec.coll.Copy()
	opts, err := i.collectionOptions(gctx.Gadget())
	if err != nil {
		return err
	}
	why, err := i.perfTracers()
	if err != nil {
		return err
	}
	if why != "" {
		// Forced perf event arrays resolve against a copy of the kernel's
		// BTF; on a kernel without ring buffers the kernel's (or the
		// btfgen archive's) types stay.
		forced, err := i.usePerfEventArrays(spec)
		if err != nil {
			return err
		}
		if forced != nil {
			opts.Programs.KernelTypes = forced
		}
		gctx.Logger().Info("tracers send records through perf event arrays", "gadget", i.name, "reason", why)
	}
	for {
		coll, err := ebpf.NewCollectionWithOptions(spec, opts)
		if err == nil {
			i.coll = coll
			i.fields.kstack, i.fields.ustack = coll.Maps[igKernelStackM], coll.Maps[igUserStackM]
			return i.fillMntNsFilter()
		}
		prog := failedProgram(err)
		if i.dropOptional(gctx, prog, err) {
			delete(spec.Programs, prog)
			continue
		}
		partner, paired := i.spec.fallbacks[prog]
		if !paired {
			partner, paired = i.spec.fallbackOf[prog]
		}
		if !paired || i.dropped[prog] != nil {
			return i.loadError(err)
		}
		if perr := i.dropped[partner]; perr != nil {
			return fmt.Errorf("%w; %s, the other program of its GADGET_FALLBACK pair, was refused too: %w", i.loadError(err), partner, i.loadError(perr))
		}
		i.dropped[prog] = err
		delete(spec.Programs, prog)
	}
}

// fillMntNsFilter puts the run's mount namespaces into the object's filter
// map before any program is attached (see MntNsFilter.load).
func (i *instance) fillMntNsFilter() error {
	if i.filter == nil {
		return nil
	}
	return i.filter.load(i.coll.Maps[igFilterMap])
}

// failedProgram is the program a load error names ("program x: ..."), or "".
func failedProgram(err error) string {
	s, ok := strings.CutPrefix(err.Error(), "program ")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(s, ":")
	return name
}

// kernelRelease is uname -r, for messages.
func kernelRelease() string {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "(unknown release)"
	}
	return unix.ByteSliceToString(uts.Release[:])
}

// loadError names the refused program and shows the end of the verifier's
// log, where the reason is.
func (i *instance) loadError(err error) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		if prog := failedProgram(err); prog != "" && errors.Is(err, ebpf.ErrNotSupported) {
			if ps, ok := i.spec.coll.Programs[prog]; ok {
				kind, target, _ := strings.Cut(ps.SectionName, "/")
				switch kind {
				case "fentry", "fexit", "fmod_ret", "tp_btf":
					return fmt.Errorf("load gadget %s: program %s (section %s): kernel %s has no function %s in its BTF to attach to, or no BPF trampolines: %w", i.name, prog, ps.SectionName, kernelRelease(), target, err)
				}
			}
		}
		if errors.Is(err, unix.EPERM) {
			if os.Geteuid() == 0 {
				// root was refused: the kernel lacks what the program
				// needs (fentry/fexit need BPF trampolines), or lockdown
				// forbids it.
				return fmt.Errorf("load gadget %s: %w (the kernel refused it although running as root: it may lack support for the program's section, e.g. BPF trampolines for fentry/fexit, or be in lockdown)", i.name, err)
			}
			return fmt.Errorf("load gadget %s: %w (run as root or with CAP_BPF and CAP_PERFMON)", i.name, err)
		}
		return fmt.Errorf("load gadget %s: %w", i.name, err)
	}
	prog := "?"
	if s := err.Error(); strings.HasPrefix(s, "program ") {
		prog, _, _ = strings.Cut(strings.TrimPrefix(s, "program "), ":")
	}
	log := ve.Log
	if n := i.op.opts.VerifierLogLines; len(log) > n {
		log = log[len(log)-n:]
	}
	return fmt.Errorf("load gadget %s: the kernel verifier refused program %s (%v); end of the verifier log:\n  %s",
		i.name, prog, ve.Cause, strings.Join(log, "\n  "))
}

// Start attaches every program by its section, then reads the tracers'
// ring buffers and runs the snapshotters.
func (i *instance) Start(gctx *gadget.Context) error {
	// in name order, so that runs (and their errors) are reproducible
	names := make([]string, 0, len(i.spec.coll.Programs))
	for name := range i.spec.coll.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := i.spec.fallbackOf[name]; ok {
			continue // attached only in place of its program, below
		}
		if i.spec.optional[name] && i.dropped[name] != nil {
			continue // not loaded; PreStart said so
		}
		err := i.attachProgram(name)
		if err != nil && i.spec.optional[name] {
			i.skipOptional(gctx, name, err)
			continue
		}
		fb, ok := i.spec.fallbacks[name]
		if err == nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if ferr := i.attachProgram(fb); ferr != nil {
			return fmt.Errorf("%w; its fallback: %w", err, ferr)
		}
		gctx.Logger().Info("attached a fallback program", "gadget", i.name, "program", fb, "insteadOf", name, "kernel", kernelRelease(), "reason", err.Error())
	}
	for _, t := range i.spec.tracers {
		if t.perf {
			rd, err := i.newPerfReader(t)
			if err != nil {
				return err
			}
			i.readers = append(i.readers, rd)
			i.wg.Add(1)
			go i.readPerf(gctx, t, rd)
			continue
		}
		rd, err := ringbuf.NewReader(i.coll.Maps[t.mapName])
		if err != nil {
			return fmt.Errorf("read ring buffer %s: %w", t.mapName, err)
		}
		i.readers = append(i.readers, rd)
		i.wg.Add(1)
		go i.readTracer(gctx, t, rd)
	}
	i.stopIv, i.abortIv = make(chan struct{}), make(chan struct{})
	for _, iv := range i.spec.intervals {
		i.wg.Add(1)
		go i.runInterval(gctx, iv, i.stopIv, i.abortIv)
	}
	left := new(atomic.Int32)
	left.Store(int32(len(i.spec.mapIters)))
	for _, mi := range i.spec.mapIters {
		i.wg.Add(1)
		go i.runMapIter(gctx, mi, i.mapIter, left, i.stopIv, i.abortIv)
	}
	if len(i.spec.snapshotters) > 0 {
		i.wg.Add(1)
		go func() {
			defer i.wg.Done()
			for _, s := range i.spec.snapshotters {
				for _, prog := range s.programs {
					if err := i.snapshot(gctx.Context(), s, prog); err != nil {
						gctx.Fail(err)
						return
					}
				}
			}
			// one run of every iterator is the whole snapshot
			gctx.Cancel()
		}()
	}
	return nil
}

// attachProgram attaches one loaded program by its section.
func (i *instance) attachProgram(name string) error {
	ps := i.spec.coll.Programs[name]
	if err := i.dropped[name]; err != nil {
		return fmt.Errorf("program %s (section %s) was not loaded: %w", name, ps.SectionName, i.loadError(err))
	}
	l, err := attach(ps.SectionName, i.coll.Programs[name])
	if err != nil {
		return fmt.Errorf("attach program %s (section %s): %w", name, ps.SectionName, err)
	}
	if l != nil {
		i.links = append(i.links, l)
	}
	return nil
}

// runInterval emits the entries of an interval source's map every
// interval, and once more when Stop closes stop; it ends without emitting
// when Close closes abort (Start failed: the other stages are gone).
func (i *instance) runInterval(gctx *gadget.Context, iv interval, stop, abort <-chan struct{}) {
	defer i.wg.Done()
	rec := iv.ds.NewRecord()
	d := newDrainer(i.coll.Maps[iv.mapName], "interval source "+iv.ds.Name(), iv.mapName, iv.size, func(_, value []byte) error {
		rec.Load(value)
		return iv.ds.Emit(rec)
	})
	fetchEvery(gctx, i.every, 0, d.drain, stop, abort)
}

// fetchEvery calls fetch every interval, and once more when stop is
// closed; it ends without fetching when abort is closed. With count > 0 it
// ends after that many fetches and reports true.
func fetchEvery(gctx *gadget.Context, every time.Duration, count int, fetch func() error, stop, abort <-chan struct{}) bool {
	t := time.NewTicker(every)
	defer t.Stop()
	for fetched := 0; ; {
		select {
		case <-t.C:
		case <-stop:
			if err := fetch(); err != nil {
				gctx.Fail(err)
			}
			return false
		case <-abort:
			return false
		}
		if err := fetch(); err != nil {
			gctx.Fail(err)
			return false
		}
		if fetched++; count > 0 && fetched == count {
			return true
		}
	}
}

// drainBatch is how many entries one batch syscall moves.
const drainBatch = 256

// drainer empties a hash map, handing each entry to emit. It owns its
// buffers: one drainer per goroutine.
type drainer struct {
	m       *ebpf.Map
	what    string // "interval source x", for errors
	mapName string
	valSize int
	emit    func(key, value []byte) error
	keys    reflect.Value // []([keySize]byte), for the batch syscalls
	vals    reflect.Value // []([valSize]byte)
	// batch is false once the kernel refused batch operations (before
	// 5.6): entries are then read and deleted one by one
	batch bool
}

func newDrainer(m *ebpf.Map, what, mapName string, valSize int, emit func(key, value []byte) error) *drainer {
	byteT := reflect.TypeOf(byte(0))
	kt := reflect.ArrayOf(int(m.KeySize()), byteT)
	vt := reflect.ArrayOf(valSize, byteT)
	return &drainer{
		m: m, what: what, mapName: mapName, valSize: valSize, emit: emit, batch: true,
		keys: reflect.MakeSlice(reflect.SliceOf(kt), drainBatch, drainBatch),
		vals: reflect.MakeSlice(reflect.SliceOf(vt), drainBatch, drainBatch),
	}
}

// drain emits every value of the map and deletes it. Batches are read and
// deleted in one syscall each, so the program's updates between the read
// and the delete of an entry are not lost (except one that looked the
// entry up just before it was deleted).
func (d *drainer) drain() error {
	if d.batch {
		err := d.drainBatches()
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		d.batch = false
	}
	return d.drainOneByOne()
}

func (d *drainer) drainBatches() error {
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.m.BatchLookupAndDelete(&cursor, d.keys.Interface(), d.vals.Interface(), nil)
		for j := 0; j < n; j++ {
			k := d.keys.Index(j).Slice(0, int(d.m.KeySize())).Bytes()
			if eerr := d.emit(k, d.vals.Index(j).Slice(0, d.valSize).Bytes()); eerr != nil {
				return eerr
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // the end of the map
		}
		if err != nil {
			return fmt.Errorf("%s: read and clear map %s: %w", d.what, d.mapName, err)
		}
	}
}

// drainOneByOne lists the keys, then reads and deletes each entry; an
// update between the read and the delete of an entry is lost.
func (d *drainer) drainOneByOne() error {
	var keys [][]byte
	key := make([]byte, d.m.KeySize())
	value := make([]byte, d.valSize)
	it := d.m.Iterate()
	for it.Next(&key, &value) {
		keys = append(keys, append([]byte(nil), key...))
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: read map %s: %w", d.what, d.mapName, err)
	}
	for _, k := range keys {
		if err := d.m.Lookup(k, &value); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("%s: read map %s: %w", d.what, d.mapName, err)
		}
		if err := d.m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("%s: clear map %s: %w", d.what, d.mapName, err)
		}
		if err := d.emit(k, value); err != nil {
			return err
		}
	}
	return nil
}

// readTracer emits every sample of one ring buffer until the reader is
// flushed or closed. The record buffers are reused: no allocation per event.
func (i *instance) readTracer(gctx *gadget.Context, t tracer, rd *ringbuf.Reader) {
	defer i.wg.Done()
	var sample ringbuf.Record
	i.readSamples(gctx, t, "ring buffer", rd.SetDeadline, func() ([]byte, uint64, error) {
		err := rd.ReadInto(&sample)
		return sample.RawSample, 0, err
	})
}

// readSamples emits what read returns — a sample, or a count of samples
// the kernel dropped — until the reader is flushed or closed. It waits at
// most PollInterval for a wakeup before it reads again.
func (i *instance) readSamples(gctx *gadget.Context, t tracer, what string, setDeadline func(time.Time), read func() (raw []byte, lost uint64, err error)) {
	rec := t.ds.NewRecord()
	poll := i.op.opts.PollInterval
	for {
		setDeadline(time.Now().Add(poll))
		raw, lost, err := read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // nothing woke us: read again what arrived since
			}
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, perf.ErrFlushed) || errors.Is(err, os.ErrClosed) {
				return
			}
			gctx.Fail(fmt.Errorf("read %s %s: %w", what, t.mapName, err))
			return
		}
		if lost > 0 {
			t.ds.AddLost(lost)
			continue
		}
		rec.Load(raw)
		if err := t.ds.Emit(rec); err != nil {
			gctx.Fail(err)
			return
		}
	}
}

// snapshot runs one iterator program of s once and emits one record per
// entry.
func (i *instance) snapshot(ctx context.Context, s snapshotter, prog string) error {
	it, err := link.AttachIter(link.IterOptions{Program: i.coll.Programs[prog]})
	if err != nil {
		return fmt.Errorf("snapshotter %s: attach iterator %s: %w", s.ds.Name(), prog, err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return fmt.Errorf("snapshotter %s: open iterator: %w", s.ds.Name(), err)
	}
	defer rd.Close()
	size := s.size
	buf := make([]byte, 64*size)
	rec := s.ds.NewRecord()
	var pending []byte
	for ctx.Err() == nil {
		n, err := rd.Read(buf)
		pending = append(pending, buf[:n]...)
		for len(pending) >= size {
			rec.Load(pending[:size])
			if emitErr := s.ds.Emit(rec); emitErr != nil {
				return emitErr
			}
			pending = pending[size:]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("snapshotter %s: read iterator: %w", s.ds.Name(), err)
		}
		if n == 0 {
			break
		}
	}
	if len(pending) != 0 && ctx.Err() == nil {
		return fmt.Errorf("snapshotter %s: iterator wrote %d trailing bytes; entries must be exactly sizeof(struct) = %d bytes", s.ds.Name(), len(pending), size)
	}
	return nil
}

// bufferReader is a ring-buffer or perf reader: Flush makes its reading
// goroutine deliver what is buffered and end, Close releases it.
type bufferReader interface {
	Flush() error
	Close() error
}

// Stop detaches every program, delivers what is still in the ring
// buffers, waits for the readers and counts lost samples.
func (i *instance) Stop(gctx *gadget.Context) error {
	var errs []error
	for _, l := range i.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	i.links = nil
	if i.stopIv != nil {
		close(i.stopIv)
		i.stopIv = nil
	}
	for _, rd := range i.readers {
		if err := rd.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("flush buffer reader: %w", err))
			_ = rd.Close()
		}
	}
	i.wg.Wait()
	for _, t := range i.spec.tracers {
		if n, err := i.lost(t.mapName); err != nil {
			errs = append(errs, err)
		} else {
			t.ds.AddLost(n)
		}
	}
	return errors.Join(errs...)
}

func (i *instance) lost(mapName string) (uint64, error) {
	m, ok := i.coll.Maps[mapName+lostSuffix]
	if !ok {
		return 0, nil // declared without GADGET_TRACER_MAP: losses are not counted
	}
	var perCPU []uint64
	if err := m.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read lost counter %s%s: %w", mapName, lostSuffix, err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// Close releases every kernel object; safe after any failed step.
func (i *instance) Close(*gadget.Context) error {
	var errs []error
	for _, l := range i.links {
		errs = append(errs, l.Close())
	}
	i.links = nil
	// closing the readers interrupts readers still blocked when Start
	// failed before Stop could flush them; then wait for them
	for _, rd := range i.readers {
		if err := rd.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	i.readers = nil
	// interval emitters still run when Start failed after starting them
	if i.abortIv != nil {
		close(i.abortIv)
		i.abortIv = nil
	}
	i.wg.Wait()
	if i.filter != nil {
		i.filter.unload()
	}
	if i.coll != nil {
		i.coll.Close()
		i.coll = nil
	}
	return errors.Join(errs...)
}
