package hooks

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A task logs its hook's lines through TaskDeps.Logger, with nothing in
// the context, each line tagged with the package, hook, binding, queue,
// run ID and stream; a failed attempt is one info line with the reason.
func TestRunTaskLogsOutputThroughItsLogger(t *testing.T) {
	dir := newPackage(t, map[string]string{
		"hooks/talk": bashHook("configVersion: v1\nschedule:\n- name: tick\n  crontab: '* * * * *'", `
echo "hello from talk"
echo "a warning" >&2`),
		"hooks/fail": bashHook("configVersion: v1\nschedule:\n- name: tick\n  crontab: '* * * * *'", `
echo "cannot reach the thing" >&2
exit 1`),
	})
	rec := &logRecorder{}
	deps := TaskDeps{Runner: NewRunner(RunnerOptions{}), Logger: rec.logger()}
	trig := Trigger{Type: Schedule, Binding: "tick"}

	talk := loadHook(t, dir, "talk")
	if err := NewRunTask(deps, talk, nil, trig).InQueue("ns.test-pkg/ticks").Execute(context.Background()); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := rec.output("stdout"), rec.output("stderr")
	if len(stdout) != 1 || stdout[0].msg != "hello from talk" || len(stderr) != 1 || stderr[0].msg != "a warning" {
		t.Fatalf("logged stdout %+v, stderr %+v", stdout, stderr)
	}
	runID := stdout[0].kv["runID"]
	for _, e := range append(stdout, stderr...) {
		for k, want := range map[string]any{"package": "ns.test-pkg", "hook": "talk", "binding": "schedule:tick", "queue": "ns.test-pkg/ticks"} {
			if e.kv[k] != want {
				t.Errorf("line %q: %s=%v, want %v", e.msg, k, e.kv[k], want)
			}
		}
		if id, _ := e.kv["runID"].(string); len(id) != 8 || e.kv["runID"] != runID {
			t.Errorf("line %q: runID %v, want the run's 8-digit ID %v", e.msg, e.kv["runID"], runID)
		}
	}

	fail := loadHook(t, dir, "fail")
	err := NewRunTask(deps, fail, nil, trig).InQueue("ns.test-pkg").Execute(context.Background())
	if err == nil {
		t.Fatal("a hook exiting 1 did not fail its task")
	}
	var failed []logEntry
	for _, e := range rec.all() {
		if e.kv["hook"] == "fail" && strings.HasPrefix(e.msg, "hook failed") {
			failed = append(failed, e)
		}
	}
	if len(failed) != 1 || failed[0].err != nil || !strings.Contains(fmt.Sprint(failed[0].kv["error"]), "cannot reach the thing") ||
		failed[0].kv["exitCode"] != 1 || failed[0].kv["queue"] != "ns.test-pkg" {
		t.Fatalf("want one info line for the failed attempt with its reason, got %+v", failed)
	}
	if runID == failed[0].kv["runID"] {
		t.Errorf("two runs share the run ID %v", runID)
	}
}

// A hook printing 100,000 lines at full speed gets the burst and the rate
// into the log, the rest counted and reported in one line; the dump's tail
// still has its last lines, and memory holds only the tail.
func TestRunOutputFloodIsLimited(t *testing.T) {
	const lines = 100000
	dir := newPackage(t, map[string]string{"hooks/flood": bashHook(trivialConfig, "seq 1 "+strconv.Itoa(lines))})
	h := loadHook(t, dir, "flood")
	rec := &logRecorder{}
	r := NewRunner(RunnerOptions{OutputLinesPerSecond: 100, OutputBurst: 500})
	start := time.Now()
	res, err := r.Run(context.Background(), h, RunInput{Binding: "onStartup", Logger: rec.logger()})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	took := time.Since(start)
	logged := int64(len(rec.output("stdout")))
	if max := 500 + int64(took.Seconds()*100) + 1; logged > max {
		t.Errorf("%d lines logged in %s, want at most %d (burst 500, 100 a second)", logged, took, max)
	}
	if logged < 500 || res.DroppedLines != lines-logged {
		t.Errorf("logged %d, dropped %d: want the burst logged and the rest of %d counted", logged, res.DroppedLines, lines)
	}
	var notes []string
	for _, e := range rec.all() {
		if e.kv["output"] == nil {
			notes = append(notes, e.msg)
		}
	}
	want := fmt.Sprintf("%d lines of hook flood's output dropped", res.DroppedLines)
	if !strings.Contains(strings.Join(notes, "\n"), want) || !strings.Contains(strings.Join(notes, "\n"), "prints more than 100 lines per second") {
		t.Errorf("log notes %q lack %q and the start of the drop", notes, want)
	}
	tail := r.Output(h.ID())
	if len(tail) != DefaultOutputTail || tail[len(tail)-1].Text != strconv.Itoa(lines) || tail[0].Text != strconv.Itoa(lines-DefaultOutputTail+1) {
		t.Fatalf("tail of %d lines from %+v to %+v, want the last %d", len(tail), tail[0], tail[len(tail)-1], DefaultOutputTail)
	}
	if tail[0].RunID != res.RunID || tail[0].Stream != "stdout" {
		t.Errorf("tail line %+v, want run %s on stdout", tail[0], res.RunID)
	}
	r.Forget("ns.test-pkg")
	if got := r.Output(h.ID()); got != nil {
		t.Errorf("Forget kept the tail: %d lines", len(got))
	}
}

func TestHookOutputTail(t *testing.T) {
	for _, tc := range []struct {
		name  string
		max   int
		lines []string
		want  []string
	}{
		{"empty", 3, nil, nil},
		{"under the limit", 3, []string{"a", "b"}, []string{"a", "b"}},
		{"wraps around", 3, []string{"a", "b", "c", "d", "e"}, []string{"c", "d", "e"}},
		{"long line cut", 2, []string{strings.Repeat("x", MaxOutputTailLine+10)}, []string{strings.Repeat("x", MaxOutputTailLine)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &runOutput{hook: &hookOutput{limiter: NewRunner(RunnerOptions{}).output(&Hook{Name: "h"}).limiter, max: tc.max}, run: "r"}
			for _, l := range tc.lines {
				o.take("stdout", []byte(l))
			}
			var got []string
			for _, l := range o.hook.lines() {
				got = append(got, l.Text)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Fatalf("tail %q, want %q", got, tc.want)
			}
		})
	}
}
