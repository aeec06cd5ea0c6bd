package trace_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// mntns is the mount namespace of the fake container's shell.
func (fc *fakeContainer) mntns(t *testing.T) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/mnt", fc.cmd.Process.Pid), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// waitRunMntNs waits until the run serving Trace k lets exactly want
// through its kernel mount-namespace filter.
func waitRunMntNs(t *testing.T, n *node, k string, want []uint64, what string) {
	t.Helper()
	slices.Sort(want)
	eventually.NoError(t, 30*time.Second, what, func() error {
		for _, r := range n.ctrl.Runs() {
			if slices.Contains(r.Traces, k) {
				if !slices.Equal(r.MntNs, want) {
					return fmt.Errorf("run %s filters mount namespaces %v, want %v", r.ID, r.MntNs, want)
				}
				return nil
			}
		}
		return fmt.Errorf("no run serves %s", k)
	})
}

// TestInspektorGadgetABIMntNsFilterLive: the kernel's mount-namespace
// filter that a Trace's spec.filter fills follows the containers while the
// run goes: a matching container started after the run began is reported
// (its namespace joins the map), one whose pod is gone leaves the map, and
// the kernel still drops the host's execs.
func TestInspektorGadgetABIMntNsFilterLive(t *testing.T) {
	ns, n, first := igContainerNode(t, "gpmiglivefirst")
	runEvery(t, marker(t, "gpmigliveoutside"))
	fakePod(t, ns, "web-0", n.name, first)

	web := newTrace(t, ns, "web", n.name, "ig-trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Filter = &gadgetv1alpha1.ContainerFilter{Namespace: ns, Labels: map[string]string{"app": "web"}}
	})
	annotate(t, key(web), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(web), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationError != "" || got.Status.OperationWarning != "" {
		t.Fatalf("operationError %q, operationWarning %q", got.Status.OperationError, got.Status.OperationWarning)
	}
	waitRunMntNs(t, n, key(web).String(), []uint64{first.mntns(t)}, "the first container's mount namespace in the kernel filter")

	// a second pod matching the filter, started while the run goes
	later := startFakeContainer(t, marker(t, "gpmiglivelater"))
	fakePod(t, ns, "web-1", n.name, later)
	waitTrace(t, key(web), 30*time.Second, "the later container's execs", func(tr *gadgetv1alpha1.Trace) bool {
		return contains(tr.Status.Output, "gpmiglivelater")
	})
	waitRunMntNs(t, n, key(web).String(), []uint64{first.mntns(t), later.mntns(t)}, "the later container's mount namespace added to the kernel filter")
	deliversOnlyTo(t, n, key(web))

	// the first pod goes (at once, as a kubelet would finish it): its
	// namespace leaves the map
	if err := env.Client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-0"}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitRunMntNs(t, n, key(web).String(), []uint64{later.mntns(t)}, "the deleted pod's mount namespace removed from the kernel filter")
	annotate(t, key(web), gadgetv1alpha1.OperationStop)
	waitTrace(t, key(web), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
}

// TestInspektorGadgetABIMntNsFilterLiveConfined: a confined Trace started
// when its namespace has no container on the node runs with an empty
// kernel filter (every event dropped); its namespace's container started
// later is reported, and another namespace's never reaches the map.
func TestInspektorGadgetABIMntNsFilterLiveConfined(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns, other := env.Namespace(t), env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningIGPackage(t, ns, n)

	tr := newTrace(t, ns, "confined", n.name, "ig-trace-exec")
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationError != "" {
		t.Fatalf("operationError %q", got.Status.OperationError)
	}
	waitRunMntNs(t, n, key(tr).String(), nil, "an empty kernel filter")

	outsider := startFakeContainer(t, marker(t, "gpmigliveother"))
	fakePod(t, other, "other-0", n.name, outsider)
	mine := startFakeContainer(t, marker(t, "gpmigliveown"))
	fakePod(t, ns, "own-0", n.name, mine)
	waitTrace(t, key(tr), 30*time.Second, "the later container's execs", func(tr *gadgetv1alpha1.Trace) bool {
		return contains(tr.Status.Output, "gpmigliveown")
	})
	waitRunMntNs(t, n, key(tr).String(), []uint64{mine.mntns(t)}, "the namespace's own container, and only it, in the kernel filter")
	deliversOnlyTo(t, n, key(tr))
	annotate(t, key(tr), gadgetv1alpha1.OperationStop)
	got = waitTrace(t, key(tr), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	if contains(got.Status.Output, "gpmigliveother") {
		t.Errorf("another namespace's container reached a confined Trace: %s", got.Status.Output)
	}
}

// TestTraceOfIGFieldsGadget: a Trace of a gadget whose gadget.yaml limits
// a param (possibleValues, typeHint) is refused before anything is loaded
// when spec.parameters breaks the limit: operationError and a Warning
// Event name the gadget, the param and the allowed values, and the log
// says it. With allowed values it runs, and its output holds Inspektor
// Gadget's field types formatted: the syscall and signal of a kill by
// name, with the caller's user and group names.
func TestTraceOfIGFieldsGadget(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	var logs testlog.Lines
	n := startNode(t, uniqueNode(t), nodeOptions{logger: logs.Logger(0)})
	runningIGGadget(t, ns, "ig-fields-all", packIGGadget(t, n, "ig-fields-all", "ig_fields_all"))

	bad := newTrace(t, ns, "bad", n.name, "ig-fields-all", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Parameters = map[string]string{"ipversion": "5"}
	})
	annotate(t, key(bad), gadgetv1alpha1.OperationStart)
	want := []string{"gadget ig-fields-all", `param ipversion: "5" is not one of the allowed values 0, 4, 6`}
	got := waitTrace(t, key(bad), 60*time.Second, "start refused", func(tr *gadgetv1alpha1.Trace) bool {
		return operationDone(tr) && tr.Status.OperationError != ""
	})
	for _, w := range want {
		if !strings.Contains(got.Status.OperationError, w) {
			t.Errorf("operationError %q does not say %q", got.Status.OperationError, w)
		}
	}
	env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Kind: "Trace", Name: bad.Name,
		Type: corev1.EventTypeWarning, Reason: "OperationFailed", Parts: want})
	eventually.True(t, 10*time.Second, "a log line naming the refused param", func() bool {
		return logs.Count("trace operation failed", key(bad).String(), "gadget ig-fields-all", "param ipversion", "allowed values 0, 4, 6") > 0
	})

	// kill(2) of a child of the test, which the param pid (typeHint
	// int32) selects
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
	good := newTrace(t, ns, "good", n.name, "ig-fields-all", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Parameters = map[string]string{"ipversion": "6", "pid": fmt.Sprint(sleep.Process.Pid)}
	})
	annotate(t, key(good), gadgetv1alpha1.OperationStart)
	got = waitTrace(t, key(good), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationError != "" {
		t.Fatalf("operationError %q", got.Status.OperationError)
	}
	if err := syscall.Kill(sleep.Process.Pid, syscall.SIGUSR2); err != nil { // kill(2), not a pidfd
		t.Fatal(err)
	}
	target := fmt.Sprintf(`"target":%d`, sleep.Process.Pid)
	waitTrace(t, key(good), 30*time.Second, "the kill in status.output", func(tr *gadgetv1alpha1.Trace) bool {
		return contains(tr.Status.Output, target)
	})
	annotate(t, key(good), gadgetv1alpha1.OperationStop)
	got = waitTrace(t, key(good), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	for _, e := range events(t, got.Status.Output) {
		if num, ok := e["target"].(float64); !ok || int(num) != sleep.Process.Pid || e["syscall"] == nil {
			continue
		}
		if e["syscall"] != "kill" || e["sig"] != "SIGUSR2" || e["user"] != "root" || e["group"] != "root" {
			t.Errorf("kill event %v: want syscall kill, sig SIGUSR2, user and group root", e)
		}
		return
	}
	t.Errorf("no kill event for pid %d in %s", sleep.Process.Pid, got.Status.Output)
}
