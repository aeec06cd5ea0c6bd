package trace_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// tenants is a node with two tenant namespaces, A and B, each with a pod
// whose container (a fake one) execs a marker, a host process exec'ing a
// third marker, and a namespace P labelled for node-wide tracing.
type tenants struct {
	n                *node
	a, b, p          string
	fcA, fcB         *fakeContainer
	inA, inB, onHost string // the markers' names
	gadget           string // the package every namespace's Traces name
	witnessFile      string // the File output of a privileged Trace
}

// setUpTenants starts the node, the containers, the pods and the host
// marker, installs gadget (trace-exec or ig-trace-exec) in B and P, and
// starts a privileged witness Trace in P (File mode) once its output
// shows that the node knows both pods.
func setUpTenants(t *testing.T, gadget string) *tenants {
	t.Helper()
	requireRoot(t)
	tn := &tenants{a: env.Namespace(t), b: env.Namespace(t), p: privilegedNamespace(t), gadget: gadget,
		inA: "gpmtenanta", inB: "gpmtenantb", onHost: "gpmtenanthost"}
	tn.n = startNode(t, uniqueNode(t), nodeOptions{})
	for _, ns := range []string{tn.b, tn.p} {
		if gadget == "ig-trace-exec" {
			runningIGPackage(t, ns, tn.n)
		} else {
			runningPackage(t, ns, gadget, gadget)
		}
	}
	tn.fcA = startFakeContainer(t, marker(t, tn.inA))
	tn.fcB = startFakeContainer(t, marker(t, tn.inB))
	runEvery(t, marker(t, tn.onHost))
	fakePod(t, tn.a, "a-0", tn.n.name, tn.fcA)
	fakePod(t, tn.b, "b-0", tn.n.name, tn.fcB)

	w := newTrace(t, tn.p, "witness", tn.n.name, gadget, fileOutput)
	annotate(t, key(w), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(w), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	tn.witnessFile = filepath.Join(tn.n.dir, "traces", tn.p, "witness.jsonl")
	// The node's pod index must hold both pods before a confined Trace
	// starts: the witness's events carry the pods' names once it does.
	eventually.NoError(t, 60*time.Second, "the witness to see both pods' and the host's execs in "+tn.witnessFile, func() error {
		evs, err := fileEvents(tn.witnessFile, 0)
		if err != nil {
			return err
		}
		for _, want := range []struct{ comm, pod string }{{tn.inA, "a-0"}, {tn.inB, "b-0"}, {tn.onHost, ""}} {
			if !slices.ContainsFunc(evs, func(e map[string]any) bool { return e["comm"] == want.comm && (want.pod == "" || e["pod"] == want.pod) }) {
				return fmt.Errorf("%d events, none of %s (pod %q)", len(evs), want.comm, want.pod)
			}
		}
		return nil
	})
	return tn
}

func fileOutput(tr *gadgetv1alpha1.Trace) { tr.Spec.OutputMode = gadgetv1alpha1.OutputFile }

// fileEvents decodes the JSON lines of a File-mode output from byte off
// on.
func fileEvents(path string, off int) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if off > len(data) {
		return nil, fmt.Errorf("%s shrank below %d bytes", path, off)
	}
	var evs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data[off:]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s: %w: %q", path, err, sc.Text())
		}
		evs = append(evs, e)
	}
	return evs, sc.Err()
}

func fileSize(t *testing.T, path string) int {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Size())
}

// hasExecs says which of comms the File output path lacks after byte
// off, or nil.
func hasExecs(path string, off int, comms ...string) error {
	evs, err := fileEvents(path, off)
	if err != nil {
		return err
	}
	for _, comm := range comms {
		if countComm(evs, comm) == 0 {
			return fmt.Errorf("%d events after byte %d, none of %s", len(evs), off, comm)
		}
	}
	return nil
}

// witnessSeesAll waits until the witness's output, after byte off, holds
// execs of A's container, B's container and the host: they happened while
// whatever started before was running.
func (tn *tenants) witnessSeesAll(t *testing.T, off int) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "new execs of A, B and the host in "+tn.witnessFile, func() error {
		return hasExecs(tn.witnessFile, off, tn.inA, tn.inB, tn.onHost)
	})
}

// onlyB fails unless every event is of B's container and some are.
func (tn *tenants) onlyB(t *testing.T, evs []map[string]any) {
	t.Helper()
	for _, e := range evs {
		if e["container"] != tn.fcB.id || e["namespace"] != tn.b || e["pod"] != "b-0" {
			t.Fatalf("a confined Trace in %s got an event of another namespace or of the host: %v", tn.b, e)
		}
	}
	if countComm(evs, tn.inB) == 0 {
		t.Fatalf("no exec of B's container in %d events", len(evs))
	}
}

// TestTraceConfinedToItsNamespace: a Trace in namespace B, which lacks the
// privileged-traces label, sees the execs of B's container and none of
// A's container or of the host, though they run on the same node at the
// same time (the witness in the labelled namespace P sees all three), for
// a bundled gadget and for a gadget with Inspektor Gadget's
// mount-namespace filter map, whose kernel filter then holds B's
// container only: its run delivers nothing B's Trace does not take.
func TestTraceConfinedToItsNamespace(t *testing.T) {
	for _, gadget := range []string{"trace-exec", "ig-trace-exec"} {
		t.Run(gadget, func(t *testing.T) {
			t.Parallel()
			tn := setUpTenants(t, gadget)
			b := newTrace(t, tn.b, "tenant", tn.n.name, gadget, fileOutput)
			annotate(t, key(b), gadgetv1alpha1.OperationStart)
			got := waitTrace(t, key(b), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
			if got.Status.OperationError != "" || got.Status.OperationWarning != "" {
				t.Fatalf("operationError %q, operationWarning %q", got.Status.OperationError, got.Status.OperationWarning)
			}
			tn.witnessSeesAll(t, fileSize(t, tn.witnessFile))
			bFile := filepath.Join(tn.n.dir, "traces", tn.b, "tenant.jsonl")
			eventually.NoError(t, 30*time.Second, "B's execs in "+bFile, func() error { return hasExecs(bFile, 0, tn.inB) })
			if gadget == "ig-trace-exec" {
				tn.emptyNamespaceKernelDropsAll(t)
				deliversOnlyTo(t, tn.n, key(b))
			}
			annotate(t, key(b), gadgetv1alpha1.OperationStop)
			waitTrace(t, key(b), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
			evs, err := fileEvents(bFile, 0)
			if err != nil {
				t.Fatal(err)
			}
			tn.onlyB(t, evs)
		})
	}
}

// emptyNamespaceKernelDropsAll: a confined Trace of a gadget with the
// kernel's mount-namespace filter, in a namespace with no pod on the node,
// starts with a warning saying so, and the kernel delivers its run nothing
// while the node's processes exec (the filter is on with an empty map, not
// off).
func (tn *tenants) emptyNamespaceKernelDropsAll(t *testing.T) {
	t.Helper()
	ns := env.Namespace(t)
	runningIGPackage(t, ns, tn.n)
	tr := newTrace(t, ns, "empty", tn.n.name, tn.gadget)
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if !strings.HasPrefix(got.Status.OperationWarning, trace.WarningNoContainerInNamespace+"; this gadget filters by mount namespace in the kernel") {
		t.Fatalf("operationWarning %q: want that no container of the namespace runs and the kernel filters", got.Status.OperationWarning)
	}
	tn.witnessSeesAll(t, fileSize(t, tn.witnessFile))
	trKey := key(tr).String()
	i := slices.IndexFunc(tn.n.ctrl.Runs(), func(r trace.RunInfo) bool { return slices.Contains(r.Traces, trKey) })
	if i < 0 {
		t.Fatalf("no run serves %s", trKey)
	}
	if r := tn.n.ctrl.Runs()[i]; r.Records != 0 {
		t.Fatalf("run %s of %s (Traces %v): the kernel delivered %d records; want none", r.ID, trKey, r.Traces, r.Records)
	}
	annotate(t, key(tr), gadgetv1alpha1.OperationStop)
	waitTrace(t, key(tr), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
}

// TestConfinedTraceRefusals: an unprivileged Trace naming another
// namespace in spec.filter, or choosing the kernel's mount namespaces
// itself, is refused with an operationError naming the field, its
// namespace and the label (a scheduled one: each run's error), and a
// Warning Event; the node goes on serving the namespace's other Traces.
// No eBPF is loaded.
func TestConfinedTraceRefusals(t *testing.T) {
	t.Parallel()
	a, b := env.Namespace(t), env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	for _, tc := range []struct {
		name  string
		opt   traceOpt
		field string
	}{
		{"other-namespace", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.Filter = &gadgetv1alpha1.ContainerFilter{Namespace: a}
		}, "spec.filter.namespace"},
		{"mntns", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.Parameters = map[string]string{"mntns": "4026531841"}
		}, "spec.parameters.mntns"},
		{"scheduled", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.Filter = &gadgetv1alpha1.ContainerFilter{Namespace: a}
			tr.Spec.Schedule = "@every 1s"
		}, "spec.filter.namespace"},
	} {
		tr := newTrace(t, b, tc.name, n.name, "no-package-needed", tc.opt)
		var msg string
		var got *gadgetv1alpha1.Trace
		if tr.Spec.Schedule != "" {
			got = waitTrace(t, key(tr), 30*time.Second, "a failed run", func(tr *gadgetv1alpha1.Trace) bool { return len(tr.Status.Runs) > 0 })
			msg = got.Status.Runs[0].Error
		} else {
			annotate(t, key(tr), gadgetv1alpha1.OperationStart)
			got = waitTrace(t, key(tr), 30*time.Second, "answered", func(tr *gadgetv1alpha1.Trace) bool {
				return operationDone(tr) && tr.Status.OperationError != ""
			})
			msg = got.Status.OperationError
		}
		for _, want := range []string{tc.field, "namespace " + b, trace.PrivilegedTracesLabel + "=true"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not name %q", tc.name, msg, want)
			}
		}
		if got.Status.State == gadgetv1alpha1.TraceStarted {
			t.Errorf("%s: a refused Trace is %s", tc.name, got.Status.State)
		}
		waitWarning(t, key(tr), tc.field)
	}
	// the node goes on: a Trace of the namespace is still answered
	other := newTrace(t, b, "next", n.name, "no-such-package")
	annotate(t, key(other), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(other), 30*time.Second, "answered", func(tr *gadgetv1alpha1.Trace) bool {
		return operationDone(tr) && tr.Status.OperationError != ""
	})
	if !strings.Contains(got.Status.OperationError, "no-such-package") {
		t.Fatalf("the next Trace: operationError %q, want the missing package named", got.Status.OperationError)
	}
}

// waitWarning waits for a Warning Event on Trace k whose message holds
// what.
func waitWarning(t *testing.T, k types.NamespacedName, what string) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "a Warning Event on Trace "+k.String()+" naming "+what, func() error {
		var list corev1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(k.Namespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Name == k.Name && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, what) {
				return nil
			}
		}
		return fmt.Errorf("%d events in %s, none a Warning on %s naming %s", len(list.Items), k.Namespace, k.Name, what)
	})
}

// setPrivileged adds or removes the label on ns, as a cluster admin does.
func setPrivileged(t *testing.T, ns string, on bool) {
	t.Helper()
	value := "null"
	if on {
		value = `"true"`
	}
	patch := []byte(`{"metadata":{"labels":{"` + trace.PrivilegedTracesLabel + `":` + value + `}}}`)
	if err := env.Client.Patch(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedLabelChanges: a Trace in a labelled namespace sees the
// host and other namespaces; when the label is removed its running run
// stops at once with an operationError and a Warning Event saying why,
// and started again it is confined (a warning says no container of its
// namespace runs on the node). A label added back does not widen the
// confined run that is running; the next run is node-wide.
func TestPrivilegedLabelChanges(t *testing.T) {
	t.Parallel()
	tn := setUpTenants(t, "trace-exec")
	wide := newTrace(t, tn.p, "wide", tn.n.name, tn.gadget, fileOutput)
	k := key(wide)
	path := filepath.Join(tn.n.dir, "traces", tn.p, "wide.jsonl")
	annotate(t, k, gadgetv1alpha1.OperationStart)
	waitTrace(t, k, 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	eventually.NoError(t, 30*time.Second, "execs of A, B and the host in "+path, func() error {
		return hasExecs(path, 0, tn.inA, tn.inB, tn.onHost)
	})

	// The witness, in P too, stops with it; a second witness in a
	// namespace that keeps the label shows that the node went on.
	q := privilegedNamespace(t)
	runningPackage(t, q, tn.gadget, tn.gadget)
	w2 := newTrace(t, q, "witness", tn.n.name, tn.gadget, fileOutput)
	annotate(t, key(w2), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(w2), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	tn.witnessFile = filepath.Join(tn.n.dir, "traces", q, "witness.jsonl")
	tn.witnessSeesAll(t, 0)

	setPrivileged(t, tn.p, false)
	got := waitTrace(t, k, 30*time.Second, "Stopped after the label went", stateIs(gadgetv1alpha1.TraceStopped))
	if !strings.Contains(got.Status.OperationError, "no longer has the label "+trace.PrivilegedTracesLabel+"=true") {
		t.Fatalf("operationError %q: want the lost label named", got.Status.OperationError)
	}
	if n := len(got.Status.Runs); n != 1 || got.Status.Runs[0].EndTime == nil || got.Status.Runs[0].Error == "" {
		t.Fatalf("runs %+v: want one ended run carrying the reason", got.Status.Runs)
	}
	waitWarning(t, k, trace.PrivilegedTracesLabel)
	waitTrace(t, key(w2), 10*time.Second, "still Started", stateIs(gadgetv1alpha1.TraceStarted))

	// started again, the Trace is confined to P, where no pod runs
	off := fileSize(t, path)
	annotate(t, k, gadgetv1alpha1.OperationStart)
	got = waitTrace(t, k, 60*time.Second, "Started confined", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationWarning != trace.WarningNoContainerInNamespace || got.Status.OperationError != "" {
		t.Fatalf("confined run: operationWarning %q, operationError %q", got.Status.OperationWarning, got.Status.OperationError)
	}
	tn.witnessSeesAll(t, fileSize(t, tn.witnessFile))
	// the label back: the running confined run stays confined
	setPrivileged(t, tn.p, true)
	tn.witnessSeesAll(t, fileSize(t, tn.witnessFile))
	if evs, err := fileEvents(path, off); err != nil || len(evs) != 0 {
		t.Fatalf("the confined run of %s in a namespace without pods got %d events (%v): %v", k, len(evs), err, evs)
	}
	if got := waitTrace(t, k, 10*time.Second, "read", func(*gadgetv1alpha1.Trace) bool { return true }); got.Status.State != gadgetv1alpha1.TraceStarted {
		t.Fatalf("the confined run ended when the label came back: state %s, error %q", got.Status.State, got.Status.OperationError)
	}

	// the next run is node-wide again
	annotate(t, k, gadgetv1alpha1.OperationStop)
	waitTrace(t, k, 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	off = fileSize(t, path)
	annotate(t, k, gadgetv1alpha1.OperationStart)
	got = waitTrace(t, k, 60*time.Second, "Started node-wide", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationWarning != "" || got.Status.OperationError != "" {
		t.Fatalf("node-wide run: operationWarning %q, operationError %q", got.Status.OperationWarning, got.Status.OperationError)
	}
	eventually.NoError(t, 30*time.Second, "execs of A, B and the host in the new run's part of "+path, func() error {
		return hasExecs(path, off, tn.inA, tn.inB, tn.onHost)
	})
	annotate(t, k, gadgetv1alpha1.OperationStop)
	waitTrace(t, k, 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
}

// TestScheduledRunStopsWhenLabelRemoved: a scheduled run of a Trace in a
// labelled namespace ends when the label goes, the reason in its entry of
// status.runs and a Warning Event, and the schedule goes on: the next tick
// runs (confined).
func TestScheduledRunStopsWhenLabelRemoved(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "hourly", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Schedule = "@every 2s"
		tr.Spec.Duration = &metav1.Duration{Duration: time.Hour}
	})
	k := key(tr)
	waitTrace(t, k, 30*time.Second, "a scheduled run going", func(tr *gadgetv1alpha1.Trace) bool {
		return len(tr.Status.Runs) == 1 && tr.Status.Runs[0].EndTime == nil && tr.Status.State == gadgetv1alpha1.TraceStarted
	})
	setPrivileged(t, ns, false)
	got := waitTrace(t, k, 30*time.Second, "the run ended", func(tr *gadgetv1alpha1.Trace) bool {
		return len(tr.Status.Runs) > 0 && tr.Status.Runs[0].EndTime != nil
	})
	if !strings.Contains(got.Status.Runs[0].Error, "no longer has the label "+trace.PrivilegedTracesLabel+"=true") {
		t.Fatalf("the ended run's error %q: want the lost label named", got.Status.Runs[0].Error)
	}
	waitWarning(t, k, trace.PrivilegedTracesLabel)
	waitTrace(t, k, 30*time.Second, "the next tick's run", func(tr *gadgetv1alpha1.Trace) bool {
		return len(tr.Status.Runs) == 2 && tr.Status.Runs[1].Error == "" && tr.Status.State == gadgetv1alpha1.TraceStarted
	})
}
