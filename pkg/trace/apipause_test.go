package trace_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// apiPause is the node's 30 s deadline of one request (reachTryTimeout):
// the API server stays frozen until a write of the node has been refused
// by that deadline, not merely delayed; the test waits at most twice
// that for it.
const apiPause = 30 * time.Second

// TestScheduledTraceSurvivesFrozenAPIServer: the API server frozen
// (SIGSTOP: requests hang, unlike the refused connections of
// TestTickMissedDuringOutageIsCounted) while a scheduled run is under
// way. The run that ended during the outage is recorded with its end
// once the server is back (not left running forever in status.runs),
// the ticks due meanwhile are counted in status.skippedRuns (the ended
// run holds its schedule entry until its outcome is written, so they are
// skipped as ticks due while a run still goes), and runs resume on
// schedule. Not parallel: the frozen server is every test's.
func TestScheduledTraceSurvivesFrozenAPIServer(t *testing.T) {
	requireRoot(t)
	ns := privilegedNamespace(t)
	var logs testlog.Lines
	n := startNode(t, uniqueNode(t), nodeOptions{logger: logs.Logger(0)})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	const duration, every = time.Second, 3 * time.Second
	tr := newTrace(t, ns, "frozen", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Schedule = "@every " + every.String()
		tr.Spec.Duration = &metav1.Duration{Duration: duration}
		tr.Spec.HistoryLimit = 100 // every run of the test stays in the history
	})
	inFlight := waitTrace(t, key(tr), 60*time.Second, "a run under way", func(tr *gadgetv1alpha1.Trace) bool {
		r := tr.Status.Runs
		return len(r) > 0 && r[len(r)-1].EndTime == nil
	})
	started := inFlight.Status.Runs[len(inFlight.Status.Runs)-1].StartTime

	resume := env.PauseAPIServer(t)
	// The server stays frozen until the node's write of the ended run's
	// outcome has been refused by its own deadline (30 s): the case this
	// test is about.
	eventually.True(t, 2*apiPause, "the node's write of the run's outcome refused by its deadline", func() bool {
		return logs.Count(`"msg"="API server unreachable; retrying until it is back"`, `"action"="write the outcome of the run to status"`) > 0
	})
	resumed := time.Now()
	resume()
	outage := resumed.Sub(started.Add(duration))

	got := waitTrace(t, key(tr), 2*time.Minute, "the run under way at the outage ended, missed ticks counted, runs resumed", func(tr *gadgetv1alpha1.Trace) bool {
		ended, after := false, false
		for _, r := range tr.Status.Runs {
			if r.StartTime.Unix() == started.Unix() {
				ended = r.EndTime != nil
			}
			after = after || (r.Error == "" && r.EndTime != nil && r.StartTime.After(resumed))
		}
		return ended && after && tr.Status.SkippedRuns >= 1
	})
	// every tick due while the server was frozen is counted (a few at
	// its edges may have run: the one that waited for the server, say)
	if due := int64(outage / every); got.Status.SkippedRuns < due-2 {
		t.Errorf("status.skippedRuns %d, want at least %d of the %d ticks due during the outage", got.Status.SkippedRuns, due-2, due)
	}
	seen := map[int64]bool{}
	for _, r := range got.Status.Runs {
		if seen[r.StartTime.Unix()] {
			t.Errorf("two runs started at %s: %+v", r.StartTime, got.Status.Runs)
		}
		seen[r.StartTime.Unix()] = true
		if r.StartTime.Unix() == started.Unix() && r.Error != "" {
			t.Errorf("the run under way during the outage: error %q, want it recorded as it ended (its events were gathered on the node)", r.Error)
		}
		if r.EndTime == nil && r.StartTime.Before(&metav1.Time{Time: resumed}) {
			t.Errorf("run started at %s before the outage ended is still open: %+v", r.StartTime, got.Status.Runs)
		}
	}
	if c := logs.Count(`"msg"="write the outcome of the run to status"`); c > 0 {
		t.Errorf("the node gave up writing a run's outcome %d times:\n%s", c, strings.Join(logs.Get(), "\n"))
	}
}
