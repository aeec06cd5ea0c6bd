package manager_test

import (
	"reflect"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// A package re-armed (a Stalled package retried, a newer version found)
// and then deleted before its next plan is removed in full: its bindings
// stopped, its release deleted, its afterDeleteHelm hooks run. Rearm used
// to forget the spec the teardown names the release by.
func TestRemoveAfterRearm(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "execsnoop", Hooks: map[string]string{"all.sh": allBindings}})
	if err := runAll(t, m.Plan(gp("exec", "execsnoop", `{"maxRows": 5}`))); err != nil {
		t.Fatal(err)
	}
	j.take()

	m.Rearm("ns.exec")
	tasks, err := m.PlanRemove("ns.exec")
	if err != nil {
		t.Fatal(err)
	}
	if err := runAll(t, tasks); err != nil {
		t.Fatalf("remove after Rearm: %v", err)
	}
	want := []string{"disable ns.exec", "unsubscribed ns/exec", "delete ns/exec", "hook ns.exec all.sh afterDeleteHelm", "forget ns.exec"}
	if got := j.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("remove after Rearm calls = %v, want %v", got, want)
	}
	if _, ok := m.State("ns.exec"); ok {
		t.Error("removed package still has state")
	}

	// Re-armed, then planned again: the whole plan runs, from Download.
	if err := runAll(t, m.Plan(gp("exec", "execsnoop", `{"maxRows": 5}`))); err != nil {
		t.Fatal(err)
	}
	m.Rearm("ns.exec")
	if got, want := names(m.Plan(gp("exec", "execsnoop", `{"maxRows": 5}`))),
		[]string{"download ns.exec", "install ns.exec", "load ns.exec", "startup ns.exec", "run ns.exec"}; !reflect.DeepEqual(got, want) {
		t.Errorf("plan after Rearm = %v, want %v", got, want)
	}
}
