package cron

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

func TestValidate(t *testing.T) {
	valid := []string{
		"*/5 * * * *",
		"0 */5 * * * *",
		"30 2 * * MON-FRI",
		"@hourly",
		"@every 1h30m",
		"CRON_TZ=America/New_York 0 9 * * *",
		"TZ=UTC @daily",
	}
	for _, spec := range valid {
		if err := Validate(spec); err != nil {
			t.Errorf("Validate(%q) = %v", spec, err)
		}
	}
	invalid := []struct{ spec, why string }{
		{"", "it is empty"},
		{"   ", "it is empty"},
		{"* * *", "expected 5 to 6 fields, found 3"},
		{"* * * * * * *", "expected 5 to 6 fields, found 7"},
		{"61 * * * *", "end of range (61) above maximum (59)"},
		{"* * * * FUNDAY", "failed to parse int from FUNDAY"},
		{"@fortnightly", "unrecognized descriptor"},
		{"@every soon", "failed to parse duration"},
		{"CRON_TZ=Mars/Olympus 0 9 * * *", "provided bad location Mars/Olympus"},
		{"0 0 30 2 *", "matches no date"},
	}
	for _, tt := range invalid {
		err := Validate(tt.spec)
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), `"`+tt.spec+`"`) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("Validate(%q) = %v, want ErrInvalidSpec naming the spec and %q", tt.spec, err, tt.why)
		}
	}
}

func TestAddBadInput(t *testing.T) {
	m := New(Options{})
	err := m.Add("trace/gadget/t1", "schedule", "every hour")
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), `add cron entry trace/gadget/t1/schedule: parse cron spec "every hour"`) {
		t.Fatalf("Add = %v", err)
	}
	if err := m.Add("", "x", "@hourly"); err == nil || !strings.Contains(err.Error(), "owner and name must not be empty") {
		t.Fatalf("Add with empty owner = %v", err)
	}
	if err := m.Add("o", "", "@hourly"); err == nil {
		t.Fatal("Add with empty name accepted")
	}
	if n := len(m.Entries()); n != 0 {
		t.Fatalf("bad input added %d entries", n)
	}
	// A bad spec does not replace a good entry.
	if err := m.Add("o", "n", "@hourly"); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("o", "n", "@nope"); err == nil {
		t.Fatal("bad spec accepted")
	}
	if e := m.Entries(); len(e) != 1 || e[0].Spec != "@hourly" {
		t.Fatalf("entries = %+v", e)
	}
}

type harness struct {
	t   *testing.T
	clk *clocktesting.FakeClock
	m   *Crontab
	ran chan error
}

func start(t *testing.T, at time.Time, entries ...[3]string) *harness {
	t.Helper()
	h := &harness{t: t, clk: clocktesting.NewFakeClock(at), ran: make(chan error, 1)}
	h.m = New(Options{Clock: h.clk})
	for _, e := range entries {
		if err := h.m.Add(e[0], e[1], e[2]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.ran <- h.m.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		ctx, c := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer c()
		_ = h.m.Stop(ctx)
	})
	return h
}

// step advances the clock once the loop waits on its timer.
func (h *harness) step(d time.Duration) {
	h.t.Helper()
	eventually.True(h.t, 10*time.Second, "the crontab to wait for its timer", h.clk.HasWaiters)
	h.clk.Step(d)
}

func (h *harness) trigger() Trigger {
	h.t.Helper()
	select {
	case tr := <-h.m.Triggers():
		return tr
	case <-time.After(10 * time.Second):
		h.t.Fatal("no trigger")
	}
	return Trigger{}
}

func (h *harness) noTrigger() {
	h.t.Helper()
	select {
	case tr := <-h.m.Triggers():
		h.t.Fatalf("unexpected trigger %+v", tr)
	case <-time.After(50 * time.Millisecond):
	}
}

var t0 = time.Date(2026, 1, 15, 10, 29, 0, 0, time.UTC)

func TestTriggers(t *testing.T) {
	tests := []struct {
		name string
		spec string
		step time.Duration
		want time.Time
	}{
		{"five fields", "30 10 * * *", time.Minute, t0.Add(time.Minute)},
		{"six fields with seconds", "*/10 * * * * *", 10 * time.Second, t0.Add(10 * time.Second)},
		{"descriptor", "@every 1m", time.Minute, t0.Add(time.Minute)},
		{"hourly", "@hourly", 31 * time.Minute, time.Date(2026, 1, 15, 11, 0, 0, 0, time.UTC)},
		{"CRON_TZ", "CRON_TZ=America/New_York 30 5 * * *", time.Minute, t0.Add(time.Minute)}, // 05:30 EST is 10:30 UTC
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, t0, [3]string{"trace/gadget/t1", "schedule", tt.spec})
			if next := h.m.Entries()[0].Next; !next.Equal(tt.want) {
				t.Fatalf("next = %v, want %v", next, tt.want)
			}
			h.noTrigger()
			h.step(tt.step)
			tr := h.trigger()
			if tr.Owner != "trace/gadget/t1" || tr.Name != "schedule" || !tr.Scheduled.Equal(tt.want) {
				t.Fatalf("trigger %+v, want trace/gadget/t1 schedule at %v", tr, tt.want)
			}
		})
	}
}

func TestSkipIfRunning(t *testing.T) {
	h := start(t, t0, [3]string{"pkg", "hook", "@every 1m"}, [3]string{"other", "hook", "@every 1m"})
	h.step(time.Minute)
	first := []Trigger{h.trigger(), h.trigger()}
	if first[0].Owner != "other" || first[1].Owner != "pkg" {
		t.Fatalf("triggers %+v, want other then pkg", first)
	}
	h.m.Done(first[0]) // "other" finished, "pkg" still running

	h.step(time.Minute)
	tr := h.trigger()
	if tr.Owner != "other" {
		t.Fatalf("got %+v", tr)
	}
	h.m.Done(tr)
	h.noTrigger()
	h.step(time.Minute)
	h.m.Done(h.trigger())
	h.noTrigger()

	if s := h.m.Stats(); s.Fired != 4 || s.Skipped != 2 {
		t.Fatalf("stats %+v, want 4 fired and 2 skipped", s)
	}
	for _, e := range h.m.Entries() {
		switch e.Owner {
		case "pkg":
			if !e.Running || e.Fired != 1 || e.Skipped != 2 {
				t.Fatalf("pkg entry %+v", e)
			}
		case "other":
			if e.Running || e.Fired != 3 || e.Skipped != 0 {
				t.Fatalf("other entry %+v", e)
			}
		}
	}
	// Done with a stale scheduled time does not end the current run.
	h.m.Done(Trigger{Owner: "pkg", Name: "hook", Scheduled: t0})
	h.m.Done(first[1])
	h.step(time.Minute)
	for range 2 {
		if tr := h.trigger(); tr.Owner == "pkg" {
			return
		}
	}
	t.Fatal("pkg did not fire again after Done")
}

func TestRemoveOwner(t *testing.T) {
	h := start(t, t0, [3]string{"a", "x", "@every 1m"}, [3]string{"a", "y", "@every 1m"}, [3]string{"b", "x", "@every 1m"})
	h.m.RemoveOwner("a")
	if e := h.m.Entries(); len(e) != 1 || e[0].Owner != "b" {
		t.Fatalf("entries %+v", e)
	}
	h.step(time.Minute)
	if tr := h.trigger(); tr.Owner != "b" {
		t.Fatalf("got %+v", tr)
	}
	h.noTrigger()
	h.m.Remove("b", "x")
	if e := h.m.Entries(); len(e) != 0 {
		t.Fatalf("entries %+v", e)
	}
}

func TestStopWaitsForRunningJobs(t *testing.T) {
	h := start(t, t0, [3]string{"a", "x", "@every 1m"})
	h.step(time.Minute)
	tr := h.trigger()

	stopped := make(chan error, 1)
	go func() { stopped <- h.m.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v while a job was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := h.m.Add("a", "late", "@hourly"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add after Stop = %v", err)
	}
	h.m.Done(tr)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := <-h.ran; err != nil {
		t.Fatalf("Start = %v", err)
	}
	if _, ok := <-h.m.Triggers(); ok {
		t.Fatal("Triggers open after Stop")
	}
	if err := h.m.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop = %v", err)
	}
	if err := h.m.Start(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Stop = %v", err)
	}
}

func TestStopGivesUpWhenCtxEnds(t *testing.T) {
	h := start(t, t0, [3]string{"trace/gadget/t1", "schedule", "@every 1m"})
	h.step(time.Minute)
	h.trigger()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := h.m.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "runs still in progress: trace/gadget/t1/schedule") {
		t.Fatalf("Stop = %v", err)
	}
}

func TestStopDropsUndeliveredTriggers(t *testing.T) {
	h := start(t, t0, [3]string{"a", "x", "@every 1m"})
	h.step(time.Minute) // due, but nobody receives
	eventually.True(t, 10*time.Second, "the entry to fire", func() bool { return h.m.Stats().Fired > 0 })
	// The undelivered trigger is not a running job: Stop returns at once.
	if err := h.m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStopWithoutStart(t *testing.T) {
	m := New(Options{})
	if err := m.Add("a", "b", "@hourly"); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStartTwice(t *testing.T) {
	h := start(t, t0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // should this call win the race, it returns at once
	eventually.NoError(t, 10*time.Second, "a second Start to be refused", func() error {
		err := h.m.Start(ctx)
		if err != nil && strings.Contains(err.Error(), "already started") {
			return nil
		}
		return fmt.Errorf("second Start = %v", err)
	})
}
