package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

func TestDump(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	s := NewService(Options{SucceededEvents: true, Clock: clk, random: func() float64 { return 0 }})
	defer stop(t, s)

	// Queue "ns.a": a failed task, a running one and a pending one.
	if err := s.Enqueue("ns.a", task("doomed", func(context.Context) error { return errors.New("chart not found") }), MaxAttempts(1)); err != nil {
		t.Fatal(err)
	}
	events(t, s, 1)
	clk.Step(time.Second)
	g := newGate()
	if err := s.Enqueue("ns.a", g.task("install")); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)
	clk.Step(time.Second)
	if err := s.Enqueue("ns.a", task("run", nil)); err != nil {
		t.Fatal(err)
	}
	// Queue "ns.b": a task waiting for its retry.
	failed := make(chan struct{})
	if err := s.Enqueue("ns.b", task("hook-run hooks/10-sync", func(context.Context) error {
		close(failed)
		return errors.New("exit status 1")
	})); err != nil {
		t.Fatal(err)
	}
	<-failed
	eventually.True(t, 10*time.Second, "the retry to be scheduled", func() bool { return len(s.Dump().Queues[1].Pending) > 0 })

	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	retry := t2.Add(time.Second)
	want := Dump{Queues: []QueueDump{
		{
			Name: "ns.a", Length: 1,
			Running: &RunningTask{Name: "install", Since: t1, Attempt: 1},
			Pending: []PendingTask{{Name: "run", EnqueuedAt: t2}},
			Failed:  []FailedTask{{Name: "doomed", EnqueuedAt: t0, FailedAt: t0, Attempts: 1, Error: "chart not found"}},
		},
		{
			Name: "ns.b", Length: 1,
			Pending: []PendingTask{{Name: "hook-run hooks/10-sync", EnqueuedAt: t2, Attempts: 1, NextRetry: &retry, LastError: "exit status 1"}},
		},
	}}
	got := s.Dump()
	gotY, err := got.YAML()
	if err != nil {
		t.Fatal(err)
	}
	wantY, _ := yaml.Marshal(want)
	if string(gotY) != string(wantY) {
		t.Fatalf("dump\n%s\nwant\n%s", gotY, wantY)
	}
	for _, field := range []string{"queues:", "name: ns.a", "length: 1", "running:", "since: 2026-03-04T05:06:08Z", "attempt: 1",
		"pending:", "enqueuedAt:", "nextRetry: 2026-03-04T05:06:10Z", "lastError: exit status 1", "failed:", "failedAt:", "error: chart not found"} {
		if !strings.Contains(string(gotY), field) {
			t.Errorf("YAML lacks %q:\n%s", field, gotY)
		}
	}
	close(g.release)
}

func TestFailedListIsBounded(t *testing.T) {
	s := NewService(Options{SucceededEvents: true, FailedLimit: 3})
	defer stop(t, s)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		if err := s.Enqueue("q", task(n, func(context.Context) error { return Terminal(errors.New(n)) })); err != nil {
			t.Fatal(err)
		}
	}
	events(t, s, 5)
	f := s.Dump().Queues[0].Failed
	if len(f) != 3 || f[0].Name != "c" || f[2].Name != "e" {
		t.Fatalf("failed = %+v, want the newest 3", f)
	}
}
