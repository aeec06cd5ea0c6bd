package trace_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// TestRunShorterThanItsProgramStartEnds: a scheduled run whose duration
// (1ms) is shorter than loading its eBPF program takes traces for its
// whole duration once the program runs, then ends, and is recorded so:
// no run is left open in status.runs (found by the fault tests on a
// loaded machine, where a 500ms run's program took longer to start).
func TestRunShorterThanItsProgramStartEnds(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "brief", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Schedule = "@every 2s"
		tr.Spec.Duration = &metav1.Duration{Duration: time.Millisecond}
		tr.Spec.HistoryLimit = 100
	})
	got := waitTrace(t, key(tr), 90*time.Second, "two runs ended", func(tr *gadgetv1alpha1.Trace) bool {
		ended := 0
		for _, r := range tr.Status.Runs {
			if r.EndTime != nil {
				ended++
			}
		}
		return ended >= 2
	})
	last := got.Status.Runs[len(got.Status.Runs)-1].StartTime
	for _, r := range got.Status.Runs {
		if r.EndTime == nil && r.StartTime.Before(&last) {
			t.Errorf("run started at %s left open while a later one started: %+v", r.StartTime, got.Status.Runs)
		}
		if r.Error != "" {
			t.Errorf("run started at %s: %s", r.StartTime, r.Error)
		}
	}
}
