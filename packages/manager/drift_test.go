package manager_test

import (
	"reflect"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// Changing spec.driftDetection applies the release again, so the new
// mode checks (and corrects) at once; the last check's outcome is kept
// for status, and a repeat of it is no change.
func TestDriftDetectionChangeAndReports(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "execsnoop"})
	g := gp("exec", "execsnoop", "")
	if err := runAll(t, m.Plan(g)); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.exec"); st.Drift != nil {
		t.Fatalf("drift before any check = %+v, want none", st.Drift)
	}
	j.take()

	g = g.DeepCopy()
	g.Spec.DriftDetection = &v1alpha1.DriftDetection{Mode: v1alpha1.DriftDetectionEnabled}
	tasks := m.Plan(g)
	if got := names(tasks); !reflect.DeepEqual(got, []string{"run ns.exec"}) {
		t.Fatalf("plan after a drift detection change = %v, want a run", got)
	}
	if err := runAll(t, tasks); err != nil {
		t.Fatal(err)
	}
	if got := j.take(); !reflect.DeepEqual(got, []string{"upgrade ns/exec maxRows=<nil>"}) {
		t.Errorf("calls = %v, want the release applied", got)
	}

	report := manager.DriftReport{Revision: 2, Objects: "ConfigMap ns/exec-cm at /data/value", Mode: v1alpha1.DriftDetectionEnabled, Corrected: true}
	for i, want := range []bool{true, false} {
		if got := m.RecordDrift("ns.exec", report); got != want {
			t.Errorf("RecordDrift #%d changed = %v, want %v", i+1, got, want)
		}
	}
	if st, _ := m.State("ns.exec"); st.Drift == nil || *st.Drift != report {
		t.Errorf("state's drift = %+v, want %+v", st.Drift, report)
	}
	if !m.RecordDrift("ns.exec", manager.DriftReport{Revision: 2, Mode: v1alpha1.DriftDetectionEnabled}) {
		t.Error("a clean check after a drifted one is no change")
	}
	if m.RecordDrift("ns.gone", report) {
		t.Error("a report for an unknown package changed something")
	}
}
