package coordinator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	operator "github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
)

func stalled(gp *v1alpha1.GadgetPackage) bool {
	c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
	return c != nil && c.Status == metav1.ConditionTrue
}

// errorLines returns the error-level lines (funcr writes "level" only on
// info lines) that contain every one of parts.
func errorLines(logs *testlog.Lines, parts ...string) []string {
	var out []string
lines:
	for _, l := range logs.Get() {
		if strings.Contains(l, `"level"=`) {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue lines
			}
		}
		out = append(out, l)
	}
	return out
}

// A package whose download fails and one whose hook exits 1 each get an
// error line naming the package and the reason when their task is given
// up on, not one per attempt; the failed attempts of the hook are info
// lines, and the hook's own words are in the log as its output; a healthy
// package logs no error.
func TestFailuresReachTheLogOnce(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "gone"},
		packagetest.Source{Name: "hookfail", Hooks: map[string]string{"10-start.sh": `#!/bin/sh
if [ "$1" = "--config" ]; then echo '{"configVersion":"v1","onStartup":1}'; exit 0; fi
echo "cannot start: no such device" >&2
exit 1
`}},
		packagetest.Source{Name: "fine"},
	)
	// The index still lists gone, its archive is missing: the download
	// fails.
	archives, err := filepath.Glob(filepath.Join(repoDir, "gone-*.tgz"))
	if err != nil || len(archives) != 1 {
		t.Fatalf("archive of gone: %v %v", archives, err)
	}
	if err := os.Remove(archives[0]); err != nil {
		t.Fatal(err)
	}
	createRepo(t, "logs-"+ns, repoDir)
	_, logs, _ := start(t)
	for _, name := range []string{"gone", "hookfail", "fine"} {
		createPackage(t, ns, name, "logs-"+ns)
	}
	waitFor(t, ns, "fine", "Running", running)
	for _, tc := range []struct {
		name   string
		reason []string
	}{
		{"gone", []string{"download", filepath.Base(archives[0]), "missing"}},
		{"hookfail", []string{"10-start.sh", "exit status 1", "cannot start: no such device"}},
	} {
		waitFor(t, ns, tc.name, "Stalled", stalled)
		// One error line: the task given up on, after the 2 attempts
		// start() allows. Neither the rest of its plan nor a second plan
		// runs (the package stays Stalled until its spec or retry
		// annotation changes).
		lines := errorLines(logs, `"package"="`+ns+"."+tc.name+`"`)
		want := append([]string{`"msg"="task failed; giving up"`, `"attempts"=2`}, tc.reason...)
		if len(lines) != 1 || len(errorLines(logs, append([]string{`"package"="` + ns + "." + tc.name + `"`}, want...)...)) != 1 {
			t.Errorf("%s: %d error lines, want one with %q:\n%s", tc.name, len(lines), want, strings.Join(lines, "\n"))
		}
	}
	// Each failed attempt of the hook is one info line beside its stderr
	// line.
	if n := logs.Count(`"level"=0`, `"msg"="hook failed; its task will be retried"`, `"package"="`+ns+`.hookfail"`, "cannot start: no such device"); n != 2 {
		t.Errorf("%d info lines for failed attempts of the hook, want 2", n)
	}
	if n := logs.Count(`"msg"="cannot start: no such device"`, `"output"="stderr"`, `"hook"="10-start.sh"`, `"binding"="onStartup"`, `"queue"="`+ns+`.hookfail"`, `"runID"=`); n != 2 {
		t.Errorf("the hook's stderr line is logged %d times, want once per attempt (2)", n)
	}
	if lines := errorLines(logs, `"package"="`+ns+`.fine"`); len(lines) != 0 {
		t.Errorf("the healthy package logged errors:\n%s", strings.Join(lines, "\n"))
	}
}

// A hook printing 100,000 lines as fast as it can neither floods the log
// nor holds up another package, whose hook runs while the flood is in
// progress; the log says how many lines were dropped and the dump keeps
// the flood's last lines.
func TestHookOutputFloodLeavesOthersRunning(t *testing.T) {
	const lines = 100000
	ns := env.Namespace(t)
	dir := t.TempDir()
	started, marker := filepath.Join(dir, "flood-started"), filepath.Join(dir, "quiet-ran")
	// Each hook waits (at most a minute) for the other: the quiet one runs
	// while the flood is in progress.
	flood := fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then echo '{"configVersion":"v1","onStartup":1}'; exit 0; fi
touch %q
seq 1 %d
i=0
while [ ! -e %q ]; do
  i=$((i+1)); [ $i -lt 1200 ] || { echo "the quiet hook never ran" >&2; exit 1; }
  sleep 0.05
done
`, started, lines, marker)
	quiet := fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then echo '{"configVersion":"v1","onStartup":1}'; exit 0; fi
i=0
while [ ! -e %q ]; do
  i=$((i+1)); [ $i -lt 1200 ] || { echo "the flood never started" >&2; exit 1; }
  sleep 0.05
done
echo "quiet hook here"
touch %q
`, started, marker)
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "flood", Hooks: map[string]string{"10-flood.sh": flood}},
		packagetest.Source{Name: "quiet", Hooks: map[string]string{"10-quiet.sh": quiet}},
	)
	createRepo(t, "flood-"+ns, repoDir)
	op, logs, _ := start(t)
	began := time.Now()
	createPackage(t, ns, "flood", "flood-"+ns)
	createPackage(t, ns, "quiet", "flood-"+ns)
	waitFor(t, ns, "quiet", "Running", running)
	waitFor(t, ns, "flood", "Running", running)
	took := time.Since(began)

	if logs.Count(`"msg"="quiet hook here"`, `"package"="`+ns+`.quiet"`) != 1 {
		t.Error("the quiet hook's line is not in the log")
	}
	logged := logs.Count(`"output"="stdout"`, `"package"="`+ns+`.flood"`)
	if max := hooks.DefaultOutputBurst + int(took.Seconds()*hooks.DefaultOutputLinesPerSecond) + 1; logged > max {
		t.Errorf("%d of the flood's lines logged in %s, want at most %d", logged, took, max)
	}
	dropped := fmt.Sprintf(`"msg"="%d lines of hook 10-flood.sh's output dropped"`, lines-logged)
	if logs.Count(dropped, `"package"="`+ns+`.flood"`) != 1 {
		t.Errorf("no line %s in the log", dropped)
	}

	var hd *operator.HookDump
	if p, ok := op.Package(ns + ".flood"); ok {
		for i := range p.Hooks {
			if p.Hooks[i].Name == "10-flood.sh" {
				hd = &p.Hooks[i]
			}
		}
	}
	if hd == nil {
		t.Fatal("the dump lacks hook 10-flood.sh")
	}
	if n := len(hd.Output); n != hooks.DefaultOutputTail || hd.Output[n-1].Text != strconv.Itoa(lines) {
		t.Fatalf("dump output of the flood: %+v; want its last %d lines, ending with %d", hd.Output, hooks.DefaultOutputTail, lines)
	}
}
