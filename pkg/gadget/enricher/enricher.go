package enricher

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Name of the stage.
const Name = "enricher"

// Priority runs the enricher right after the data sources exist, so that
// filters can use the fields it adds.
const Priority = 10

// Field names the enricher adds.
const (
	FieldContainer = "container"
	FieldPod       = "pod"
	FieldNamespace = "namespace"
	// FieldContainerName is added when the PodResolver is also a
	// ContainerNamer.
	FieldContainerName = "containerName"
	FieldPid           = "pid"
	FieldComm          = "comm"
)

// Process is what the enricher knows of one mount namespace.
type Process struct {
	Pid         uint32
	Comm        string
	ContainerID string
}

// PodResolver maps a container id to its pod. It must be safe for
// concurrent use and fast: it is called on the event path.
type PodResolver interface {
	Pod(containerID string) (namespace, name string, ok bool)
}

// ContainerNamer is implemented by PodResolvers that also know the name of
// each container in its pod (the name in the pod's spec, not the runtime's
// id); the enricher then adds FieldContainerName. It must be as safe and as
// fast as PodResolver.
type ContainerNamer interface {
	ContainerName(containerID string) (name string, ok bool)
}

// Options configure the enricher. The zero value is the default.
type Options struct {
	// ProcRoot is where procfs is mounted; default "/proc".
	ProcRoot string
	// RescanInterval is the least time between two /proc scans triggered
	// by unknown namespaces; default 1s.
	RescanInterval time.Duration
	// Pods resolves containers to pods; default none (pod fields stay
	// empty).
	Pods PodResolver
	// Now is the clock; default time.Now. A test seam.
	Now func() time.Time
}

// Stage is the mount-namespace enricher.
type Stage struct {
	opts Options
	// learned holds processes a caller found by its own /proc scan
	// (Learn), shared by every run's instance.
	learned *learned
}

// learned is the namespaces' processes the Stage was told of.
type learned struct {
	mu   sync.Mutex
	byNS map[uint64]Process // guarded by mu
}

func (l *learned) get(ns uint64) (Process, bool) {
	if l == nil {
		return Process{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.byNS[ns]
	return p, ok
}

// Learn records the processes of a full /proc scan (Scan) the caller made,
// replacing what an earlier one recorded (so that namespaces that are gone
// do not pile up), so
// that every run's lookups know them without a scan of their own: the
// caller that put a namespace into a kernel filter from its scan can rely
// on the namespace's events being enriched even when the process that
// sent them is already gone and a rescan is not due yet.
func (o *Stage) Learn(procs map[uint64]Process) {
	byNS := make(map[uint64]Process, len(procs))
	for ns, p := range procs {
		if p.Pid != 0 {
			byNS[ns] = p
		}
	}
	o.learned.mu.Lock()
	o.learned.byNS = byNS
	o.learned.mu.Unlock()
}

var _ gadget.Stage = (*Stage)(nil)

// New returns the enricher.
func New(opts Options) *Stage {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.RescanInterval <= 0 {
		opts.RescanInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Stage{opts: opts, learned: &learned{byNS: map[uint64]Process{}}}
}

// Name implements gadget.Stage.
func (o *Stage) Name() string { return Name }

// Priority implements gadget.Stage.
func (o *Stage) Priority() int { return Priority }

// Instantiate adds the fields to every data source with a
// mount namespace id; it opts out when there is none.
func (o *Stage) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	in := &instance{opts: o.opts, learned: o.learned, byNS: map[uint64]Process{}}
	for _, ds := range gctx.DataSources() {
		var mntns *datasource.Field
		for _, f := range ds.Fields() {
			if f.Kind == datasource.KindMntNsID {
				mntns = f
				break
			}
		}
		if mntns == nil {
			continue
		}
		if err := in.enrich(ds, mntns); err != nil {
			return nil, err
		}
	}
	if len(in.sources) == 0 {
		return nil, nil
	}
	return in, nil
}

type target struct {
	mntns                 *datasource.Field
	container, pod, podNS *datasource.Field
	containerName         *datasource.Field // nil unless Pods is a ContainerNamer
	pid, comm             *datasource.Field // nil when the source has its own
	// srcPid is the source's own pid field, nil when it has none: the
	// process of the event, looked up directly for a namespace not seen
	// before
	srcPid *datasource.Field
}

type instance struct {
	opts    Options
	learned *learned
	sources []target

	mu       sync.Mutex
	byNS     map[uint64]Process // guarded by mu
	lastScan time.Time          // guarded by mu
}

func (*instance) Name() string { return Name }

func (in *instance) enrich(ds *datasource.DataSource, mntns *datasource.Field) error {
	t := target{mntns: mntns}
	add := func(name string, kind datasource.Kind, size uint32) (*datasource.Field, error) {
		f, err := ds.AddField(name, kind, size)
		if err != nil {
			return nil, fmt.Errorf("enrich data source %s: %w", ds.Name(), err)
		}
		return f, nil
	}
	var err error
	if t.container, err = add(FieldContainer, datasource.KindString, 65); err != nil {
		return err
	}
	if in.opts.Pods != nil {
		if t.podNS, err = add(FieldNamespace, datasource.KindString, 64); err != nil {
			return err
		}
		if t.pod, err = add(FieldPod, datasource.KindString, 254); err != nil {
			return err
		}
		if _, ok := in.opts.Pods.(ContainerNamer); ok {
			// Container names are DNS labels: at most 63 bytes.
			if t.containerName, err = add(FieldContainerName, datasource.KindString, 64); err != nil {
				return err
			}
		}
	}
	if f := ds.Field(FieldPid); f == nil {
		if t.pid, err = add(FieldPid, datasource.KindUint32, 4); err != nil {
			return err
		}
	} else if f.Kind.Integer() {
		t.srcPid = f
	}
	if ds.Field(FieldComm) == nil {
		if t.comm, err = add(FieldComm, datasource.KindString, 16); err != nil {
			return err
		}
	}
	in.sources = append(in.sources, t)
	ds.Subscribe(Name, Priority, func(_ *datasource.DataSource, r *datasource.Record) error {
		in.fill(t, r)
		return nil
	})
	return nil
}

// fill writes what is known of the record's namespace; unknown namespaces
// leave the fields empty.
func (in *instance) fill(t target, r *datasource.Record) {
	var pid uint32
	if t.srcPid != nil {
		pid = uint32(t.srcPid.Uint(r))
	}
	p, ok := in.lookup(t.mntns.Uint(r), pid)
	if !ok {
		return
	}
	t.container.SetString(r, p.ContainerID)
	if t.pod != nil && p.ContainerID != "" {
		if ns, name, ok := in.opts.Pods.Pod(p.ContainerID); ok {
			t.podNS.SetString(r, ns)
			t.pod.SetString(r, name)
		}
		if t.containerName != nil {
			if name, ok := in.opts.Pods.(ContainerNamer).ContainerName(p.ContainerID); ok {
				t.containerName.SetString(r, name)
			}
		}
	}
	if t.pid != nil {
		t.pid.SetUint(r, uint64(p.Pid))
	}
	if t.comm != nil {
		t.comm.SetString(r, p.Comm)
	}
}

// lookup returns the namespace's process. On a miss it reads the event's
// own process (pid, when the record has one and it lives in ns: a
// container that just started is then known from its first event), else
// it rescans /proc when the last scan is old enough. The scan runs under
// the lock: concurrent misses wait for one scan instead of each starting
// their own.
func (in *instance) lookup(ns uint64, pid uint32) (Process, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	p, ok := in.byNS[ns]
	if ok && p.Pid != 0 {
		return p, true
	}
	if pid != 0 {
		if p, ok := readProcess(in.opts.ProcRoot, pid, ns); ok {
			in.byNS[ns] = p
			return p, true
		}
	}
	if lp, known := in.learned.get(ns); known {
		in.byNS[ns] = lp
		return lp, true
	}
	if ok {
		return p, false
	}
	now := in.opts.Now()
	if !in.lastScan.IsZero() && now.Sub(in.lastScan) < in.opts.RescanInterval {
		return Process{}, false
	}
	in.lastScan = now
	for k, v := range Scan(in.opts.ProcRoot) {
		in.byNS[k] = v
	}
	p, ok = in.byNS[ns]
	if !ok {
		// the namespace's processes are gone: remember that, or every
		// later event from it would rescan /proc once per interval
		in.byNS[ns] = Process{}
	}
	return p, ok
}

// Scan reads every process under procRoot and returns, per mount
// namespace, the process with the lowest pid in it (a container's init).
// Processes that vanish or cannot be read are skipped.
func Scan(procRoot string) map[uint64]Process {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	out := map[uint64]Process{}
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		link, err := os.Readlink(filepath.Join(dir, "ns", "mnt"))
		if err != nil {
			continue
		}
		ns, ok := parseNSLink(link)
		if !ok {
			continue
		}
		if old, ok := out[ns]; ok && old.Pid < uint32(pid) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		cg, _ := os.ReadFile(filepath.Join(dir, "cgroup"))
		out[ns] = Process{Pid: uint32(pid), Comm: strings.TrimSpace(string(comm)), ContainerID: ContainerID(cg)}
	}
	return out
}

// readProcess reads process pid under procRoot when it lives in mount
// namespace ns.
func readProcess(procRoot string, pid uint32, ns uint64) (Process, bool) {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
	link, err := os.Readlink(filepath.Join(dir, "ns", "mnt"))
	if err != nil {
		return Process{}, false
	}
	if got, ok := parseNSLink(link); !ok || got != ns {
		return Process{}, false
	}
	comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
	cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return Process{}, false
	}
	return Process{Pid: pid, Comm: strings.TrimSpace(string(comm)), ContainerID: ContainerID(cg)}, true
}

// parseNSLink reads "mnt:[4026531840]".
func parseNSLink(s string) (uint64, bool) {
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return 0, false
	}
	n, err := strconv.ParseUint(s[i+1:j], 10, 64)
	return n, err == nil
}

// containerIDPattern finds a 64-hex-digit container id as container
// runtimes name cgroups: docker-<id>.scope, cri-containerd-<id>.scope,
// crio-<id>.scope, /docker/<id>, /kubepods/.../<id>.
var containerIDPattern = regexp.MustCompile(`(?:^|[/\-])([0-9a-f]{64})(?:\.scope)?$`)

// ContainerID returns the container id in the contents of a
// /proc/<pid>/cgroup file, or "" for a process outside containers.
func ContainerID(cgroupFile []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cgroupFile))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if m := containerIDPattern.FindStringSubmatch(parts[2]); m != nil {
			return m[1]
		}
	}
	return ""
}
