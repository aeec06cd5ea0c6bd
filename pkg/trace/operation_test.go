package trace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// marker writes a copy of /bin/true named name and returns its path; its
// execs carry name as comm.
func marker(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runEvery runs bin every 100ms until the test ends.
func runEvery(t *testing.T, bin string) { runEveryAs(t, bin, nil) }

// runEveryAs runs bin every 100ms as cred (nil: as the test) until the
// test ends.
func runEveryAs(t *testing.T, bin string, cred *syscall.Credential) {
	t.Helper()
	doEvery(t, 100*time.Millisecond, func() { execMarkerQuiet(bin, cred) })
}

// doEvery calls f every d, from one goroutine, until the test ends.
func doEvery(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(d):
				f()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// markerUser returns a user no other process on the machine runs as, and
// makes bin (a marker) executable by it. A Trace of trace-exec with
// target_uid set to its uid sees only bin's execs run as that user, so
// any event it counts is a marker's.
func markerUser(t *testing.T, bin string) *syscall.Credential {
	t.Helper()
	// t.TempDir makes the marker's directory and its parent 0700
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(filepath.Dir(bin))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	id := uint32(200000 + os.Getpid()%100000)
	return &syscall.Credential{Uid: id, Gid: id}
}

// outputOf polls the node's dump of its loaded runs until the output of
// the Trace k satisfies cond, and returns it.
func outputOf(t *testing.T, n *node, k types.NamespacedName, what string, cond func(trace.OutputInfo) bool) trace.OutputInfo {
	t.Helper()
	return eventually.Value(t, 30*time.Second, fmt.Sprintf("the node's dump to show the output of %s with %s", k, what), func() (trace.OutputInfo, error) {
		runs := n.ctrl.Runs()
		for _, r := range runs {
			if o, ok := r.Outputs[k.String()]; ok && cond(o) {
				return o, nil
			}
		}
		return trace.OutputInfo{}, fmt.Errorf("runs %+v", runs)
	})
}

// events decodes status.output.
func events(t *testing.T, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		t.Fatalf("status.output is not a JSON array: %v: %q", err, out)
	}
	return evs
}

func countComm(evs []map[string]any, comm string) int {
	n := 0
	for _, e := range evs {
		if e["comm"] == comm {
			n++
		}
	}
	return n
}

func subscriptions(t *testing.T, gp *v1alpha1.GadgetPackage) []v1alpha1.Subscription {
	t.Helper()
	var got v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(gp), &got); err != nil {
		t.Fatal(err)
	}
	return got.Status.Subscriptions
}

func waitSubscriptions(t *testing.T, gp *v1alpha1.GadgetPackage, n int) []v1alpha1.Subscription {
	t.Helper()
	return eventually.Value(t, 20*time.Second, fmt.Sprintf("package %s/%s to have %d subscriptions", gp.Namespace, gp.Name, n), func() ([]v1alpha1.Subscription, error) {
		s := subscriptions(t, gp)
		if len(s) != n {
			return nil, fmt.Errorf("has %v", s)
		}
		return s, nil
	})
}

// TestStartStop is the documented flow: start, events land in status,
// stop, the output stays; the package shows the subscription meanwhile.
func TestStartStop(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	gp := runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "mytrace", n.name, "trace-exec")
	k := key(tr)

	annotate(t, k, gadgetv1alpha1.OperationStart)
	got := waitTrace(t, k, 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationError != "" {
		t.Fatalf("operationError: %s", got.Status.OperationError)
	}
	subs := waitSubscriptions(t, gp, 1)
	if subs[0].Node != n.name || subs[0].Trace != ns+"/mytrace" {
		t.Fatalf("subscription: %+v", subs[0])
	}

	// start again: a no-op with a warning
	annotate(t, k, gadgetv1alpha1.OperationStart)
	got = waitTrace(t, k, 30*time.Second, "second start handled", func(tr *gadgetv1alpha1.Trace) bool {
		return operationDone(tr) && tr.Status.OperationWarning != ""
	})
	if got.Status.State != gadgetv1alpha1.TraceStarted || !strings.Contains(got.Status.OperationWarning, "already started") {
		t.Fatalf("second start: state %s warning %q", got.Status.State, got.Status.OperationWarning)
	}

	bin := marker(t, "gpmstartstop")
	runEvery(t, bin)
	// progress is published while it runs
	waitTrace(t, k, 30*time.Second, "events in status while running", func(tr *gadgetv1alpha1.Trace) bool {
		return tr.Status.EventCount > 0 && strings.Contains(tr.Status.Output, "gpmstartstop")
	})

	annotate(t, k, gadgetv1alpha1.OperationStop)
	got = waitTrace(t, k, 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	evs := events(t, got.Status.Output)
	if countComm(evs, "gpmstartstop") == 0 || got.Status.EventCount < int64(len(evs)) {
		t.Fatalf("after stop: %d events in output (%d marker), eventCount %d", len(evs), countComm(evs, "gpmstartstop"), got.Status.EventCount)
	}
	if len(got.Status.Runs) != 1 || got.Status.Runs[0].EndTime == nil || got.Status.Runs[0].Events != got.Status.EventCount {
		t.Fatalf("runs: %+v", got.Status.Runs)
	}
	waitSubscriptions(t, gp, 0)

	// stop again: nothing runs, a warning says so
	annotate(t, k, gadgetv1alpha1.OperationStop)
	got = waitTrace(t, k, 30*time.Second, "second stop handled", func(tr *gadgetv1alpha1.Trace) bool {
		return operationDone(tr) && strings.Contains(tr.Status.OperationWarning, "not running")
	})
	if got.Status.State != gadgetv1alpha1.TraceStopped {
		t.Fatalf("second stop changed the state to %s", got.Status.State)
	}
}

// TestOperationErrors: bad requests end in operationError naming what was
// wrong and what is allowed; the annotation is removed.
func TestOperationErrors(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	stopped := runningPackage(t, ns, "disabled-exec", "trace-exec")
	stopped.Status.Phase = v1alpha1.PhaseLoaded
	stopped.Status.Enabled = false
	stopped.Status.Reason = "requires net-base >=1.2, found 1.1"
	if err := env.Client.Status().Update(context.Background(), stopped); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, node, gadget, op string
		mutate                 func(*gadgetv1alpha1.Trace)
		want                   []string
	}{
		{name: "unknown-op", op: "restart", want: []string{`unknown operation "restart"`, "start, stop, generate, collect"}},
		{name: "collect-tracer", op: "collect", want: []string{"collect needs a snapshotter", "trace-exec is a tracer"}},
		{name: "unknown-param", op: "start", mutate: func(tr *gadgetv1alpha1.Trace) { tr.Spec.Parameters = map[string]string{"target_pid": "1"} },
			want: []string{"target_pid not declared", "it accepts:", "target_uid"}},
		{name: "not-running", op: "start", gadget: "disabled-exec", want: []string{"package " + ns + "/disabled-exec is not Running (phase Loaded)", "requires net-base"}},
		{name: "no-package", op: "start", gadget: "nothing-here", want: []string{"spec.gadget nothing-here", "no GadgetPackage"}},
		{name: "no-such-node", op: "start", node: "no-such-node-" + n.name, want: []string{`spec.node "no-such-node-` + n.name + `": no such Node`}},
		{name: "bad-output-name", op: "start", mutate: func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.OutputMode = gadgetv1alpha1.OutputFile
			tr.Spec.Output = "../escape"
		}, want: []string{"spec.outputMode File", "spec.output"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodeName, g := n.name, "trace-exec"
			if tc.node != "" {
				nodeName = tc.node
			}
			if tc.gadget != "" {
				g = tc.gadget
			}
			var opts []traceOpt
			if tc.mutate != nil {
				opts = append(opts, tc.mutate)
			}
			tr := newTrace(t, ns, tc.name, nodeName, g, opts...)
			annotate(t, key(tr), tc.op)
			got := waitTrace(t, key(tr), 30*time.Second, "operation handled", func(tr *gadgetv1alpha1.Trace) bool {
				return operationDone(tr) && tr.Status.OperationError != ""
			})
			for _, w := range tc.want {
				if !strings.Contains(got.Status.OperationError, w) {
					t.Errorf("operationError %q does not contain %q", got.Status.OperationError, w)
				}
			}
			if got.Status.State == gadgetv1alpha1.TraceStarted {
				t.Errorf("state Started after a failed %s", tc.op)
			}
		})
	}
}

// TestGenerateAndCollect: generate runs for spec.duration then reports
// Completed; collect takes one snapshot.
func TestGenerateAndCollect(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	runningPackage(t, ns, "snapshot-process", "snapshot-process")

	t.Run("generate", func(t *testing.T) {
		t.Parallel()
		tr := newTrace(t, ns, "gen", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.Duration = &metav1.Duration{Duration: 2 * time.Second}
		})
		runEvery(t, marker(t, "gpmgenerate"))
		annotate(t, key(tr), gadgetv1alpha1.OperationGenerate)
		start := time.Now()
		got := waitTrace(t, key(tr), 60*time.Second, "Completed", stateIs(gadgetv1alpha1.TraceCompleted))
		if time.Since(start) < 2*time.Second {
			t.Errorf("Completed after %s, before spec.duration (2s)", time.Since(start))
		}
		if countComm(events(t, got.Status.Output), "gpmgenerate") == 0 {
			t.Errorf("no marker event in output %q", got.Status.Output)
		}
		if len(got.Status.Runs) != 1 || got.Status.Runs[0].EndTime == nil {
			t.Errorf("runs: %+v", got.Status.Runs)
		}
	})
	t.Run("collect", func(t *testing.T) {
		t.Parallel()
		tr := newTrace(t, ns, "snap", n.name, "snapshot-process")
		annotate(t, key(tr), gadgetv1alpha1.OperationCollect)
		got := waitTrace(t, key(tr), 60*time.Second, "Completed", stateIs(gadgetv1alpha1.TraceCompleted))
		evs := events(t, got.Status.Output)
		self := false
		for _, e := range evs {
			if pid, ok := e["pid"].(float64); ok && int(pid) == os.Getpid() {
				self = true
			}
		}
		if !self || got.Status.OperationError != "" {
			t.Errorf("snapshot of %d processes does not hold the test process %d (error %q)", len(evs), os.Getpid(), got.Status.OperationError)
		}
	})
}

// TestDevModeNode: without NodeCheck (gadgetpm dev) spec.node must be the
// operator's own node. Not parallel: such a controller answers every
// annotated Trace of another node.
func TestDevModeNode(t *testing.T) {
	requireRoot(t)
	ns := env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{devMode: true})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "elsewhere", "elsewhere", "trace-exec")
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(tr), 30*time.Second, "operation handled", func(tr *gadgetv1alpha1.Trace) bool {
		return operationDone(tr) && tr.Status.OperationError != ""
	})
	want := `spec.node "elsewhere": this operator serves node "` + n.name + `" only`
	if !strings.Contains(got.Status.OperationError, want) {
		t.Fatalf("operationError %q does not contain %q", got.Status.OperationError, want)
	}
	n.stop(t)
}
