package manager_test

import (
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
)

// TestStepsNeedTheirPlansEarlierSteps: Install runs only on what its own
// plan's Download got, Load only on what its own plan's Install
// extracted, whatever order the tasks run in and whatever an earlier plan
// left; otherwise they fail at once (terminally, retrying cannot help)
// with an error naming the package and the missing step, and change
// nothing.
func TestStepsNeedTheirPlansEarlierSteps(t *testing.T) {
	const download, install, load = 0, 1, 2
	for _, tc := range []struct {
		name string
		// installed: a first plan ran in full before the one tested.
		installed bool
		// constraint of the tested plan's spec.version.
		constraint string
		// ran are the tested plan's steps that run first, each expected
		// to succeed unless it is the download of a constraint nothing
		// matches.
		ran  []int
		step int
		want string
	}{
		{name: "install before the download", constraint: "*", step: install,
			want: "install ns.exec: no archive downloaded by this plan: its download did not succeed"},
		{name: "load before the install", constraint: "*", ran: []int{download}, step: load,
			want: "load ns.exec: nothing installed by this plan: its install did not succeed"},
		{name: "install after a failed download, an earlier plan's archive cached", installed: true, constraint: ">=3", ran: []int{download}, step: install,
			want: "install ns.exec: no archive downloaded by this plan: its download did not succeed"},
		{name: "load after a failed download, an earlier plan's package extracted", installed: true, constraint: ">=3", ran: []int{download}, step: load,
			want: "load ns.exec: nothing installed by this plan: its install did not succeed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := setup(t, packagetest.Source{Name: "execsnoop", Hooks: map[string]string{"all.sh": allBindings}})
			if tc.installed {
				if err := runAll(t, m.Plan(gp("exec", "execsnoop", ""))); err != nil {
					t.Fatal(err)
				}
				m.Rearm("ns.exec")
			}
			before, _ := m.State("ns.exec")
			g := gp("exec", "execsnoop", "")
			g.Spec.Version = tc.constraint
			tasks := m.Plan(g)
			for _, i := range tc.ran {
				err := tasks[i].Execute(ctx)
				if wantFail := i == download && tc.constraint == ">=3"; (err != nil) != wantFail {
					t.Fatalf("%s: %v", tasks[i].Name(), err)
				}
			}
			err := tasks[tc.step].Execute(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !queue.IsTerminal(err) {
				t.Fatalf("%s: error %v (terminal: %v), want a terminal error %q", tasks[tc.step].Name(), err, queue.IsTerminal(err), tc.want)
			}
			after, _ := m.State("ns.exec")
			if after.Digest != before.Digest || after.Version != before.Version || after.Dir != before.Dir {
				t.Errorf("state changed: %+v, was %+v", after, before)
			}
			if tc.installed && after.Phase != v1alpha1.PhaseRunning {
				t.Errorf("phase %s, want the earlier plan's package still Running", after.Phase)
			}
		})
	}
}
