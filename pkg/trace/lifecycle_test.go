package trace_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// TestRestartDuringRun stops the node's controller (its manager) while a
// Trace runs and starts a new one against the same API server: the Trace
// is Started again with a warning, and the interrupted run carries an
// error, also when the old controller could not write it (a crash).
func TestRestartDuringRun(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	name := uniqueNode(t)
	dir := t.TempDir()
	n := startNode(t, name, nodeOptions{dataDir: dir})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "survivor", name, "trace-exec")
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))

	n.stop(t)
	got := waitTrace(t, key(tr), 10*time.Second, "read", func(*gadgetv1alpha1.Trace) bool { return true })
	if got.Status.State != gadgetv1alpha1.TraceStarted || len(got.Status.Runs) != 1 ||
		got.Status.Runs[0].EndTime == nil || got.Status.Runs[0].Error != trace.ErrorInterrupted {
		t.Fatalf("after the controller stopped: state %s, runs %+v", got.Status.State, got.Status.Runs)
	}
	// as if the controller had crashed: the run's end is not in status
	before := got.DeepCopy()
	got.Status.Runs[0].EndTime, got.Status.Runs[0].Error = nil, ""
	if err := env.Client.Status().Patch(context.Background(), got, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}

	n2 := startNode(t, name, nodeOptions{dataDir: dir})
	got = waitTrace(t, key(tr), 60*time.Second, "Started again", func(tr *gadgetv1alpha1.Trace) bool {
		return tr.Status.OperationWarning == trace.WarningRestarted && len(tr.Status.Runs) == 2
	})
	if got.Status.State != gadgetv1alpha1.TraceStarted || got.Status.Runs[0].Error != trace.ErrorInterrupted || got.Status.Runs[1].EndTime != nil {
		t.Fatalf("after the restart: state %s, runs %+v", got.Status.State, got.Status.Runs)
	}
	runEvery(t, marker(t, "gpmrestart"))
	waitTrace(t, key(tr), 30*time.Second, "events after the restart", func(tr *gadgetv1alpha1.Trace) bool {
		return strings.Contains(tr.Status.Output, "gpmrestart")
	})
	annotate(t, key(tr), gadgetv1alpha1.OperationStop)
	waitTrace(t, key(tr), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	n2.stop(t)
}

// fakeContainer is a process in a new mount namespace inside a cgroup
// named as containerd names a container's: what the enricher sees of a
// container.
type fakeContainer struct {
	id     string
	cgroup string
	cmd    *exec.Cmd
}

// startFakeContainer runs bin every 100ms in a new mount namespace inside
// <cgroup root>/gadgetpm-test.slice/cri-containerd-<id>.scope. It skips
// the test where the kernel refuses the cgroup or the mount namespace.
func startFakeContainer(t *testing.T, bin string) *fakeContainer {
	t.Helper()
	// cgroup v2 at /sys/fs/cgroup; on hosts in the hybrid layout its
	// unified mount, else a v1 hierarchy: the enricher reads the id from
	// whichever line of /proc/<pid>/cgroup carries it
	root := ""
	for _, r := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids"} {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err == nil {
			root = r
			break
		}
	}
	if root == "" {
		t.Skip("needs a cgroup hierarchy mounted at /sys/fs/cgroup (v2, or the hybrid layout's unified or pids)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	fc := &fakeContainer{id: hex.EncodeToString(b[:])}
	slice := filepath.Join(root, "gadgetpm-test.slice")
	fc.cgroup = filepath.Join(slice, "cri-containerd-"+fc.id+".scope")
	if err := os.MkdirAll(fc.cgroup, 0o755); err != nil {
		t.Skipf("the kernel refuses a new cgroup: %v", err)
	}
	script := fmt.Sprintf(`echo $$ > %s/cgroup.procs || exit 3; while :; do %s; sleep 0.1; done`, fc.cgroup, bin)
	fc.cmd = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	fc.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := fc.cmd.Start(); err != nil {
		t.Skipf("unshare -m: %v", err)
	}
	// exited is closed once the shell ended; waitErr says how
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = fc.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-fc.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		// the cgroup can be removed once its processes are gone
		eventually.NoError(t, 10*time.Second, "the fake container's cgroup "+fc.cgroup+" to be removed", func() error {
			if err := os.Remove(fc.cgroup); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		})
	})
	// The shell's first act in the new mount namespace is to join the
	// cgroup: once it is there, the container stands.
	eventually.NoError(t, 10*time.Second, "the fake container's shell to join "+fc.cgroup, func() error {
		select {
		case <-exited:
			t.Skipf("unshare -m ended at once (the kernel refuses a mount namespace?): %v", waitErr)
		default:
		}
		procs, err := os.ReadFile(filepath.Join(fc.cgroup, "cgroup.procs"))
		if err == nil && len(strings.TrimSpace(string(procs))) == 0 {
			err = errors.New("no process in it yet")
		}
		return err
	})
	return fc
}

// fakePod creates pod ns/name on node, labelled app=web, whose container
// "app" is fc, as the kubelet would report it.
func fakePod(t *testing.T, ns, name, node string, fc *fakeContainer) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "app", ContainerID: "containerd://" + fc.id, Image: "example.com/app:1", ImageID: "example.com/app@sha256:0", Ready: true,
	}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// TestFilterByContainer: a Trace filtered by namespace, pod and container
// name gets only the events of that container; a filter matching no
// container on the node gives a warning.
func TestFilterByContainer(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	inside := marker(t, "gpminside")
	fc := startFakeContainer(t, inside)
	runEvery(t, marker(t, "gpmoutside"))

	fakePod(t, ns, "web-0", n.name, fc)

	filtered := newTrace(t, ns, "web", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Filter = &gadgetv1alpha1.ContainerFilter{Namespace: ns, Podname: "web-0", ContainerName: "app", Labels: map[string]string{"app": "web"}}
	})
	none := newTrace(t, ns, "nomatch", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Filter = &gadgetv1alpha1.ContainerFilter{Podname: "no-such-pod"}
	})
	// The node must know the pod's container before the filtered Trace
	// starts, or it rightly warns that nothing matches: an unfiltered
	// Trace sees the container's execs carry the pod's name once it does.
	probe := newTrace(t, ns, "probe", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.OutputMode = gadgetv1alpha1.OutputFile
	})
	annotate(t, key(probe), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(probe), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	probeFile := filepath.Join(n.dir, "traces", ns, "probe.jsonl")
	eventually.NoError(t, 30*time.Second, "an exec of the container enriched with its pod in "+probeFile, func() error {
		data, err := os.ReadFile(probeFile)
		if err == nil && !strings.Contains(string(data), `"pod":"web-0"`) {
			err = fmt.Errorf("%d bytes, no event of pod web-0", len(data))
		}
		return err
	})
	annotate(t, key(probe), gadgetv1alpha1.OperationStop)
	annotate(t, key(filtered), gadgetv1alpha1.OperationStart)
	annotate(t, key(none), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(none), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationWarning != trace.WarningNoContainer {
		t.Errorf("filter matching nothing: warning %q", got.Status.OperationWarning)
	}
	got = waitTrace(t, key(filtered), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationWarning != "" {
		t.Errorf("filter matching web-0: warning %q", got.Status.OperationWarning)
	}
	waitTrace(t, key(filtered), 30*time.Second, "container events", func(tr *gadgetv1alpha1.Trace) bool {
		return strings.Contains(tr.Status.Output, "gpminside")
	})
	annotate(t, key(filtered), gadgetv1alpha1.OperationStop)
	annotate(t, key(none), gadgetv1alpha1.OperationStop)
	got = waitTrace(t, key(filtered), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	evs := events(t, got.Status.Output)
	for _, e := range evs {
		if e["container"] != fc.id || e["pod"] != "web-0" || e["namespace"] != ns {
			t.Fatalf("an event from outside the container passed the filter: %v", e)
		}
	}
	if countComm(evs, "gpminside") == 0 {
		t.Fatalf("no event of the container in %d events", len(evs))
	}
	got = waitTrace(t, key(none), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	if got.Status.EventCount != 0 {
		t.Fatalf("a filter matching nothing let %d events through", got.Status.EventCount)
	}
}

// TestPackageDisabled: when the package stops running, its Traces stop
// with the reason, the gadget is unloaded and the subscriptions go.
func TestPackageDisabled(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	gp := runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "victim", n.name, "trace-exec")
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	waitSubscriptions(t, gp, 1)
	if runs := n.ctrl.Runs(); len(runs) != 1 {
		t.Fatalf("runs loaded: %+v", runs)
	}

	// what the coordinator writes when spec.enabled becomes false
	var cur v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(gp), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Status.Phase, cur.Status.Enabled, cur.Status.Reason = v1alpha1.PhaseLoaded, false, "disabled: spec.enabled is false"
	if err := env.Client.Status().Update(context.Background(), &cur); err != nil {
		t.Fatal(err)
	}
	got := waitTrace(t, key(tr), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	want := "package " + ns + "/trace-exec is not Running (phase Loaded): disabled: spec.enabled is false"
	if got.Status.OperationError != want {
		t.Fatalf("operationError %q, want %q", got.Status.OperationError, want)
	}
	waitSubscriptions(t, gp, 0)
	eventually.NoError(t, 10*time.Second, "the gadget to be unloaded", func() error {
		if runs := n.ctrl.Runs(); len(runs) != 0 {
			return fmt.Errorf("still loaded: %+v", runs)
		}
		return nil
	})
}

// TestManyTraces starts 200 Traces of the same gadget and params on one
// node: they share one loaded program, the API server answers an
// unrelated write meanwhile, and the heap stays bounded. Not parallel, so
// that the heap measured is this test's.
func TestManyTraces(t *testing.T) {
	requireRoot(t)
	const count = 200
	ns := privilegedNamespace(t)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	n := startNode(t, uniqueNode(t), nodeOptions{})
	gp := runningPackage(t, ns, "trace-exec", "trace-exec")
	keys := make([]gadgetv1alpha1.Trace, count)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			tr := &gadgetv1alpha1.Trace{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("t-%03d", i),
					Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: gadgetv1alpha1.OperationStart}},
				Spec: gadgetv1alpha1.TraceSpec{Node: n.name, Gadget: "trace-exec"},
			}
			if err := env.Client.Create(context.Background(), tr); err != nil {
				t.Error(err)
			}
			keys[i] = *tr
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	runEvery(t, marker(t, "gpmmany"))

	// responsive: an unrelated status write is answered while they start
	probe := runningPackage(t, ns, "probe", "trace-exec")
	probe.Status.Reason = "probe"
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := env.Client.Status().Update(pctx, probe); err != nil {
		t.Fatalf("an unrelated status write while 200 Traces start: %v", err)
	}
	cancel()

	for i := range keys {
		waitTrace(t, key(&keys[i]), 3*time.Minute, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	}
	runs := n.ctrl.Runs()
	if len(runs) != 1 || len(runs[0].Traces) != count {
		t.Fatalf("want one loaded program shared by %d traces, have %d runs (%+v)", count, len(runs), len(runs))
	}
	waitSubscriptions(t, gp, count)
	// Every Trace gets the events of the one program. Progress writes of
	// the node share ProgressRate (20/s) and the Traces take turns, so with
	// 200 Traces each one publishes about every 10s; the wait allows for a
	// loaded machine.
	waitTrace(t, key(&keys[count-1]), 2*time.Minute, "events", func(tr *gadgetv1alpha1.Trace) bool {
		return strings.Contains(tr.Status.Output, "gpmmany")
	})

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	// Each Trace holds a Status sink of at most 64 KiB of output plus its
	// subscriber, and the manager caches 200 Traces; 200 x 64 KiB is
	// 12.5 MiB. 128 MiB leaves room for the control plane clients, the
	// informers and the race detector's shadow of them, and still catches
	// a per-event or per-trace leak of a gadget's size.
	const bound = 128 << 20
	t.Logf("heap in use: before %d MiB, after %d MiB, grown %d MiB (bound %d MiB)", before.HeapInuse>>20, after.HeapInuse>>20, grown>>20, bound>>20)
	if grown > bound {
		t.Fatalf("heap grew by %d MiB with %d Traces; bound %d MiB", grown>>20, count, bound>>20)
	}
	n.stop(t)
}

// Busy Status-mode Traces take turns publishing their progress: with one
// write per second for the node and three Traces whose output changes all
// the time, each publishes once before any publishes again, in the same
// order every round. (A Trace that merely tried on every tick would find
// the token taken by whichever Trace ticked first after each refill.)
func TestProgressTakesTurns(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{progressRate: 1, progressInterval: 100 * time.Millisecond})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	names := []string{"turn-a", "turn-b", "turn-c"}
	for _, name := range names {
		newTrace(t, ns, name, n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
			tr.Annotations = map[string]string{gadgetv1alpha1.OperationAnnotation: gadgetv1alpha1.OperationStart}
		})
	}
	runEvery(t, marker(t, "gpmturns"))

	// A progress write raises status.eventCount of a Started Trace; they
	// come a second apart, so polling (at most 200ms apart) sees them in
	// order.
	last := map[string]int64{}
	var order []string
	eventually.NoError(t, 2*time.Minute, "six progress writes", func() error {
		for _, name := range names {
			var tr gadgetv1alpha1.Trace
			if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &tr); err != nil {
				t.Fatal(err)
			}
			if tr.Status.State == gadgetv1alpha1.TraceStarted && tr.Status.EventCount > last[name] {
				last[name] = tr.Status.EventCount
				order = append(order, name)
			}
		}
		if len(order) < 2*len(names) {
			return fmt.Errorf("publications so far: %v", order)
		}
		return nil
	})
	order = order[:2*len(names)]
	first, second := order[:len(names)], order[len(names):]
	seen := map[string]bool{}
	for _, name := range first {
		seen[name] = true
	}
	if len(seen) != len(names) {
		t.Fatalf("publications %v: a Trace published twice before %v each published once", order, names)
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("publications %v: the second round is not in the order of the first", order)
		}
	}
}
