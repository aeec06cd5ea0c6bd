package manager_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// TestRecordHookRun: each recorded run counts in status.hooks (runs,
// failures, lastRunTime, lastError); a change of the error is worth a
// write at once; a run the operator cancelled is not recorded and keeps
// the last real error.
func TestRecordHookRun(t *testing.T) {
	m, _ := setup(t, packagetest.Source{Name: "execsnoop", Hooks: map[string]string{"all.sh": allBindings}})
	if err := runAll(t, m.Plan(gp("exec", "execsnoop", ""))); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fail := errors.New("hook all.sh: exit status 1: disk on fire")
	cancelled := fmt.Errorf("hook all.sh: cancelled: %w", context.Canceled)
	steps := []struct {
		name              string
		hook              string
		err               error
		wantChanged       bool
		wantRuns, wantErr int64
		wantLastError     string
		wantAt            time.Time
	}{
		{name: "first success", hook: "all.sh", wantRuns: 1, wantAt: t0.Add(1 * time.Second)},
		{name: "another success", hook: "all.sh", wantRuns: 2, wantAt: t0.Add(2 * time.Second)},
		{name: "a failure", hook: "all.sh", err: fail, wantChanged: true, wantRuns: 3, wantErr: 1, wantLastError: fail.Error(), wantAt: t0.Add(3 * time.Second)},
		{name: "the same failure", hook: "all.sh", err: fail, wantRuns: 4, wantErr: 2, wantLastError: fail.Error(), wantAt: t0.Add(4 * time.Second)},
		{name: "cancelled by the operator", hook: "all.sh", err: cancelled, wantRuns: 4, wantErr: 2, wantLastError: fail.Error(), wantAt: t0.Add(4 * time.Second)},
		{name: "an unknown hook", hook: "gone.sh", wantRuns: 4, wantErr: 2, wantLastError: fail.Error(), wantAt: t0.Add(4 * time.Second)},
		{name: "success after the failure", hook: "all.sh", wantChanged: true, wantRuns: 5, wantErr: 2, wantAt: t0.Add(7 * time.Second)},
	}
	for i, s := range steps {
		at := t0.Add(time.Duration(i+1) * time.Second)
		if got := m.RecordHookRun("ns.exec", s.hook, at, s.err); got != s.wantChanged {
			t.Errorf("%s: RecordHookRun = %v, want %v", s.name, got, s.wantChanged)
		}
		st, _ := m.State("ns.exec")
		if len(st.Hooks) != 1 {
			t.Fatalf("%s: hooks = %+v", s.name, st.Hooks)
		}
		h := st.Hooks[0]
		if h.Runs != s.wantRuns || h.Failures != s.wantErr || h.LastError != s.wantLastError || h.LastRunTime == nil || !h.LastRunTime.Time.Equal(s.wantAt) {
			t.Errorf("%s: hook status = runs %d failures %d lastError %q lastRunTime %v; want %d, %d, %q, %v",
				s.name, h.Runs, h.Failures, h.LastError, h.LastRunTime, s.wantRuns, s.wantErr, s.wantLastError, s.wantAt)
		}
	}
}
