package ebpfstage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
)

// The tests in this file need kprobes or fentry, which the development
// machine's kernel lacks; hack/vmtest.sh runs them inside the kernels of
// hack/kernels.list, where they must pass without skipping.

// kernelRun is a gadget run started in the background.
type kernelRun struct {
	c      *collector
	logs   *bytes.Buffer // written by the run's logger (slog serialises writes), read after it
	cancel context.CancelFunc
	done   chan runOut
}

type runOut struct {
	res *gadget.Result
	err error
}

// stop ends the run (draining ring buffers and interval maps) and returns
// its result.
func (r *kernelRun) stop(t *testing.T) *gadget.Result {
	t.Helper()
	r.cancel()
	o := <-r.done
	if o.err != nil {
		t.Fatalf("run: %v", o.err)
	}
	return o.res
}

// startOnKernel starts g with the enricher and a collector and waits until
// every stage started. When the run ends before that, refused says
// whether this kernel may refuse the gadget, given the error: a non-empty
// reason skips the test, "" fails it.
func startOnKernel(t *testing.T, g gadget.Gadget, params gadget.Params, refused func(error) string) *kernelRun {
	t.Helper()
	c := newCollector()
	rt, err := gadget.New(New(Options{}), enricher.New(enricher.Options{}), c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := &bytes.Buffer{}
	r := &kernelRun{c: c, logs: logs, cancel: cancel, done: make(chan runOut, 1)}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() {
		res, err := rt.Run(ctx, g, gadget.RunOptions{Params: params, Logger: logger})
		r.done <- runOut{res, err}
	}()
	select {
	case <-c.started:
	case o := <-r.done:
		if why := refused(o.err); why != "" {
			t.Skipf("this kernel (%s) refuses %s: %s", kernelRelease(), g.Name, why)
		}
		t.Fatalf("run ended before starting: %v", o.err)
	case <-time.After(60 * time.Second):
		t.Fatal("gadget did not start within 60s")
	}
	return r
}

// noKprobes is a refused func for gadgets that need kprobes: the run must
// fail with ErrNotSupported on a kernel whose configuration or interfaces
// say it has none.
func noKprobes(t *testing.T) func(error) string {
	return func(err error) string {
		cfg, src, cfgErr := kernelConfig()
		if cfgErr != nil {
			t.Fatalf("cannot tell whether this kernel has kprobes: %v (run: %v)", cfgErr, err)
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return ""
		}
		return kprobesAbsent(cfg, src)
	}
}

// noFentryNorKprobes is a refused func for gadgets with an fentry program
// and a kprobe fallback: the kernel must refuse both.
func noFentryNorKprobes(t *testing.T) func(error) string {
	return func(err error) string {
		cfg, src, cfgErr := kernelConfig()
		if cfgErr != nil {
			t.Fatalf("cannot tell whether this kernel has kprobes and BPF trampolines: %v (run: %v)", cfgErr, err)
		}
		fentry := fentryRefused(cfg, src, err)
		kprobes := noKprobes(t)(err)
		if fentry == "" || kprobes == "" {
			return ""
		}
		return "fentry: " + fentry + "; kprobes: " + kprobes
	}
}

// TestTopFile reads and writes a file a known number of times and checks
// the per-file, per-process counts top-file reports, summed over its
// intervals (short ones, so that several pass during the run).
func TestTopFile(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	path := filepath.Join(t.TempDir(), "top-file-marker")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	const reads, readSize, writes, writeSize = 50, 100, 7, 10
	pid := os.Getpid()
	r := startOnKernel(t, loadPackage(t, "top-file"),
		gadget.Params{"target_pid": strconv.Itoa(pid), IntervalParam: "100ms"}, noKprobes(t))
	buf := make([]byte, readSize)
	for i := 0; i < reads; i++ {
		if _, err := unix.Pread(int(f.Fd()), buf, int64(i)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(120 * time.Millisecond) // spread over several intervals
		}
	}
	for i := 0; i < writes; i++ {
		if _, err := unix.Pwrite(int(f.Fd()), buf[:writeSize], int64(i*writeSize)); err != nil {
			t.Fatal(err)
		}
	}
	res := r.stop(t)

	got := r.c.find("files", func(e map[string]any) bool {
		return e["file"] == "top-file-marker" && int(num(e["pid"])) == pid
	})
	if len(got) == 0 {
		t.Fatalf("no entry for top-file-marker by pid %d; entries: %v", pid, r.c.find("files", func(map[string]any) bool { return true }))
	}
	var sum struct{ reads, writes, rbytes, wbytes float64 }
	for _, e := range got {
		t.Logf("entry: %v", e)
		sum.reads += num(e["reads"])
		sum.writes += num(e["writes"])
		sum.rbytes += num(e["rbytes"])
		sum.wbytes += num(e["wbytes"])
		if e["comm"] != ownComm(t) || e["regular"] != true || uint64(num(e["inode"])) != st.Ino {
			t.Errorf("entry %v: want comm %q, regular true, inode %d", e, ownComm(t), st.Ino)
		}
	}
	if sum.reads != reads || sum.rbytes != reads*readSize || sum.writes != writes || sum.wbytes != writes*writeSize {
		t.Errorf("summed over %d entries: reads %v (%v bytes), writes %v (%v bytes); want %d (%d), %d (%d)",
			len(got), sum.reads, sum.rbytes, sum.writes, sum.wbytes, reads, reads*readSize, writes, writes*writeSize)
	}
	if len(got) < 2 {
		t.Errorf("the counts came in %d interval, want several (interval 100ms, reads spread over 600ms, then the stop)", len(got))
	}
	if other := r.c.find("files", func(e map[string]any) bool { return int(num(e["pid"])) != pid }); len(other) != 0 {
		t.Errorf("target_pid=%d: entries of other processes: %v", pid, other)
	}
	if st := res.Stats["files"]; st.Emitted != uint64(len(r.c.find("files", func(map[string]any) bool { return true }))) {
		t.Errorf("files: stats %+v, but the collector saw %d records", st, len(r.c.find("files", func(map[string]any) bool { return true })))
	}
}

// TestTopFileRejectsBadInterval: a bad interval names the param and what
// it takes.
func TestTopFileRejectsBadInterval(t *testing.T) {
	rt, err := gadget.New(New(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Run(context.Background(), loadPackage(t, "top-file"), gadget.RunOptions{Params: gadget.Params{IntervalParam: "fast"}})
	if err == nil || !strings.Contains(err.Error(), `param interval: "fast" is not a duration`) {
		t.Fatalf("run with interval=fast: %v, want an error naming the param and the value", err)
	}
}

// oomHogEnv makes the test binary a memory hog (TestTraceOOMKill's child).
const oomHogEnv = "GADGETPM_TEST_OOM_HOG"

// TestTraceOOMKill runs a memory hog in a cgroup limited to 64 MiB and
// checks trace-oomkill's event for it: the killed and the triggering
// process are the hog, and pages is the cgroup's limit.
func TestTraceOOMKill(t *testing.T) {
	if os.Getenv(oomHogEnv) == "1" {
		hog()
		return
	}
	needRoot(t)
	defer checkNoLeaks(t)()
	r := startOnKernel(t, loadPackage(t, "trace-oomkill"), nil, noFentryNorKprobes(t))

	// a cgroup of its own with the memory controller and 64 MiB, no swap
	const limit = 64 << 20
	root := "/sys/fs/cgroup"
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("%s is not a cgroup2 file system (statfs: %v): the test needs the unified hierarchy", root, err)
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
		t.Fatalf("enable the memory controller for %s's children: %v", root, err)
	}
	cg, err := os.MkdirTemp(root, "gadgetpm-oom-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	if err := os.WriteFile(filepath.Join(cg, "memory.max"), []byte(strconv.Itoa(limit)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, "memory.swap.max"), []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	cgfd, err := unix.Open(cg, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cgfd)

	hog := exec.Command(os.Args[0], "-test.run=^TestTraceOOMKill$", "-test.count=1")
	hog.Env = append(os.Environ(), oomHogEnv+"=1")
	hog.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	var out bytes.Buffer
	hog.Stdout, hog.Stderr = &out, &out
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	err = hog.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the hog in %s (memory.max %d) ended with %v, want killed by SIGKILL; output:\n%s", cg, limit, err, out.String())
	}
	pid := hog.Process.Pid
	eventually.True(t, 5*time.Second, fmt.Sprintf("an oomkill event for the hog %d", pid), func() bool {
		return len(r.c.find("oomkill", func(e map[string]any) bool { return int(num(e["tpid"])) == pid })) > 0
	})
	r.stop(t)
	got := r.c.find("oomkill", func(e map[string]any) bool { return int(num(e["tpid"])) == pid })
	if len(got) != 1 {
		t.Fatalf("events for the killed hog %d: %v, want one; all events: %v", pid, got, r.c.find("oomkill", func(map[string]any) bool { return true }))
	}
	e := got[0]
	t.Logf("event: %v", e)
	comm := ownComm(t) // the hog is this binary
	if int(num(e["fpid"])) != pid || e["tcomm"] != comm || e["fcomm"] != comm || num(e["fuid"]) != 0 {
		t.Errorf("event %v: want fpid %d (the hog triggered it), tcomm and fcomm %q, fuid 0", e, pid, comm)
	}
	if want := float64(limit / os.Getpagesize()); num(e["pages"]) != want {
		t.Errorf("event %v: pages %v, want %v (memory.max %d / page size %d)", e, num(e["pages"]), want, limit, os.Getpagesize())
	}
	if mntns := num(e["mntns_id"]); mntns == 0 {
		t.Errorf("event %v: no mntns_id", e)
	}
	if ts, ok := e["timestamp"].(string); !ok || ts == "" {
		t.Errorf("event %v: no timestamp", e)
	}
}

// hog allocates and touches memory until the OOM killer ends it; 1 GiB
// without being killed means its cgroup limit did not apply, and it exits.
func hog() {
	var keep [][]byte
	for i := 0; i < 1024; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
	}
	fmt.Fprintf(os.Stderr, "hog: allocated %d MiB without being killed\n", len(keep))
	os.Exit(3)
}

// TestFallbackProgram: GADGET_FALLBACK's program is an fentry on a
// function no kernel has; the runtime must attach the kprobe in its place
// and say so in its log. On a kernel without kprobes the run must fail
// with an error that names the missing function, the kernel, and why the
// kprobe failed too.
func TestFallbackProgram(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	cfg, src, err := kernelConfig()
	if err != nil {
		t.Fatalf("cannot tell whether this kernel has kprobes: %v", err)
	}
	g := gadget.Gadget{Name: "fallback", Object: testObject(t, "fallback.bpf.o")}
	if why := kprobesAbsent(cfg, src); why != "" {
		rt, err := gadget.New(New(Options{}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = rt.Run(context.Background(), g, gadget.RunOptions{})
		for _, want := range []string{"on_missing (section fentry/gadgetpm_no_such_function)", "kernel " + kernelRelease() + " has no function gadgetpm_no_such_function", "its fallback", "on_open", "this kernel has no kprobes"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("run on a kernel without kprobes (%s): %v, want an error with %q", why, err, want)
			}
		}
		return
	}
	r := startOnKernel(t, g, nil, func(error) string { return "" })
	marker := filepath.Join(t.TempDir(), "fallback-marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r.stop(t)
	pid := float64(os.Getpid())
	if got := r.c.find("probe", func(e map[string]any) bool { return num(e["pid"]) == pid && num(e["where"]) == 2 }); len(got) == 0 {
		t.Errorf("no event from the fallback kprobe for pid %v", pid)
	}
	if got := r.c.find("probe", func(e map[string]any) bool { return num(e["where"]) != 2 }); len(got) != 0 {
		t.Errorf("events from the refused program: %v", got)
	}
	logs := r.logs.String()
	t.Logf("log: %s", logs)
	for _, want := range []string{"attached a fallback program", "program=on_open", "insteadOf=on_missing", "gadgetpm_no_such_function"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log %q lacks %q", logs, want)
		}
	}
}

// TestMissingAttachTarget: a kprobe or fentry program on a function the
// kernel does not have fails the run with the function's name and the
// kernel's release, and leaves nothing behind.
func TestMissingAttachTarget(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		obj, want string
		// skip says why this kernel cannot show the error, given the run's
		skip func(err error) string
	}{
		{
			obj:  "missing_kprobe.bpf.o",
			want: "attach program on_missing (section kprobe/gadgetpm_no_such_function): kernel " + kernelRelease() + " has no function gadgetpm_no_such_function to probe",
			skip: noKprobes(t),
		},
		{
			obj:  "missing_fentry.bpf.o",
			want: "program on_missing (section fentry/gadgetpm_no_such_function): kernel " + kernelRelease() + " has no function gadgetpm_no_such_function in its BTF",
			skip: func(error) string {
				if !exists("/sys/kernel/btf/vmlinux") {
					return "no /sys/kernel/btf/vmlinux: without kernel BTF no fentry target can be found"
				}
				return ""
			},
		},
	} {
		t.Run(strings.TrimSuffix(tc.obj, ".bpf.o"), func(t *testing.T) {
			defer checkNoLeaks(t)()
			rt, err := gadget.New(New(Options{}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = rt.Run(context.Background(), gadget.Gadget{Name: "missing", Object: testObject(t, tc.obj)}, gadget.RunOptions{})
			if err == nil {
				t.Fatal("run with a program on gadgetpm_no_such_function succeeded")
			}
			if why := tc.skip(err); why != "" {
				t.Skipf("this kernel cannot show it (%s): %v", why, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run: %v\nwant an error with %q", err, tc.want)
			}
		})
	}
}

// TestIntervalSource runs the interval machinery on a tracepoint, so that it
// is tested on every kernel (and under the race detector on the host): a
// thread of its own opens a file a known number of times across several
// 50 ms intervals; the entries for that thread must add up to exactly that
// number, in more than one interval.
func TestIntervalSource(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	g := gadget.Gadget{Name: "interval", Object: testObject(t, "interval_opens.bpf.o")}
	const opens = 40
	path := filepath.Join(t.TempDir(), "interval-marker")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const batch = 10
	tid := make(chan int, 1)
	start := make(chan struct{})
	// the goroutine opens a batch, says so on opened and waits for next:
	// the test lets it go on once the gadget has reported the batch, so
	// the batches land in different intervals
	opened, next := make(chan error), make(chan struct{})
	go func() {
		// from here only this goroutine runs on its thread, so the
		// thread's opens once the gadget runs are these
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		if _, ok := <-start; !ok { // closed: the gadget did not start
			return
		}
		for i := 0; i < opens; i += batch {
			for j := 0; j < batch; j++ {
				fd, err := unix.Open(path, unix.O_RDONLY, 0)
				if err != nil {
					opened <- err
					return
				}
				unix.Close(fd)
			}
			opened <- nil
			if _, ok := <-next; !ok {
				return
			}
		}
	}()
	want := <-tid
	started, waiting := false, false
	defer func() { // let the goroutine end whatever happened
		if !started {
			close(start)
		}
		if waiting {
			close(next)
		}
	}()
	r := startOnKernel(t, g, gadget.Params{IntervalParam: "50ms"}, func(error) string { return "" })
	started = true
	start <- struct{}{}
	counted := func() float64 {
		var n float64
		for _, e := range r.c.find("opens", func(e map[string]any) bool { return int(num(e["tid"])) == want }) {
			n += num(e["calls"])
		}
		return n
	}
	for done := batch; done <= opens; done += batch {
		if err := <-opened; err != nil {
			t.Fatal(err)
		}
		waiting = true
		eventually.True(t, 30*time.Second, fmt.Sprintf("the gadget to report %d opens of thread %d", done, want), func() bool { return counted() >= float64(done) })
		waiting = false
		if done < opens {
			next <- struct{}{}
		} else {
			close(next)
		}
	}
	res := r.stop(t)
	got := r.c.find("opens", func(e map[string]any) bool { return int(num(e["tid"])) == want })
	var calls float64
	for _, e := range got {
		calls += num(e["calls"])
		if int(num(e["pid"])) != os.Getpid() {
			t.Errorf("entry %v: pid, want %d", e, os.Getpid())
		}
	}
	if calls != opens || len(got) < 2 {
		t.Errorf("thread %d: %v opens in %d entries, want %d in several: %v", want, calls, len(got), opens, got)
	}
	if st := res.Stats["opens"]; st.Emitted == 0 || st.Lost != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestBadMarkers: objects whose GADGET_INTERVAL or GADGET_FALLBACK cannot
// work are refused before anything is loaded, naming what is wrong.
func TestBadMarkers(t *testing.T) {
	for obj, want := range map[string]string{
		"bad_interval.bpf.o": "interval source calls reads map slots, which is not a hash map in the object",
		"bad_fallback.bpf.o": "GADGET_FALLBACK(on_open, on_open_kprobe): the object has no program on_open_kprobe",
	} {
		t.Run(strings.TrimSuffix(obj, ".bpf.o"), func(t *testing.T) {
			_, err := Catalog(testObject(t, obj), nil)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Catalog: %v, want an error with %q", err, want)
			}
		})
	}
}
