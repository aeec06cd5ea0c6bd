package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

func TestFIFOOrder(t *testing.T) {
	s := NewService(Options{SucceededEvents: true})
	defer stop(t, s)

	var mu sync.Mutex
	var ran []string
	const n = 50
	for i := range n {
		name := fmt.Sprintf("t%02d", i)
		if err := s.Enqueue("ns.pkg", task(name, func(context.Context) error {
			mu.Lock()
			ran = append(ran, name)
			mu.Unlock()
			return nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	evs := events(t, s, n)
	for i, ev := range evs {
		want := fmt.Sprintf("t%02d", i)
		if ev.Task != want || ev.Kind != Succeeded || ev.Queue != "ns.pkg" || ev.Attempts != 1 || ev.Err != nil {
			t.Fatalf("event %d = %+v, want %s Succeeded after 1 attempt", i, ev, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, name := range ran {
		if want := fmt.Sprintf("t%02d", i); name != want {
			t.Fatalf("run %d was %s, want %s", i, name, want)
		}
	}
}

func TestOneTaskAtATimePerQueueAndQueuesIndependent(t *testing.T) {
	s := NewService(Options{SucceededEvents: true})
	defer stop(t, s)

	// A task that never returns on its own must not hold up another queue.
	g := newGate()
	if err := s.Enqueue("ns.broken", g.task("stuck")); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)
	var running, maxRunning atomic.Int32
	for i := range 20 {
		err := s.Enqueue("ns.ok", task(fmt.Sprint(i), func(context.Context) error {
			n := running.Add(1)
			if n > maxRunning.Load() {
				maxRunning.Store(n)
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	evs := events(t, s, 20)
	for _, ev := range evs {
		if ev.Queue != "ns.ok" || ev.Kind != Succeeded {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if m := maxRunning.Load(); m != 1 {
		t.Fatalf("%d tasks of one queue ran at once, want 1", m)
	}
	close(g.release)
	if ev := events(t, s, 1)[0]; ev.Queue != "ns.broken" || ev.Kind != Succeeded {
		t.Fatalf("got %+v", ev)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		random float64
		want   []time.Duration // by failures 1, 2, ...
	}{
		{
			name: "defaults double from 1s to a 60s cap",
			opts: Options{Jitter: -1},
			want: []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, 60 * time.Second, 60 * time.Second},
		},
		{
			name: "custom base and cap",
			opts: Options{BackoffBase: 100 * time.Millisecond, BackoffCap: 250 * time.Millisecond, Jitter: -1},
			want: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond},
		},
		{
			name: "cap below base is raised to base",
			opts: Options{BackoffBase: 5 * time.Second, BackoffCap: time.Second, Jitter: -1},
			want: []time.Duration{5 * time.Second, 5 * time.Second},
		},
		{
			name:   "default jitter shortens by at most a fifth",
			opts:   Options{},
			random: 0.5,
			want:   []time.Duration{900 * time.Millisecond, 1800 * time.Millisecond},
		},
		{
			name:   "jitter never exceeds the cap",
			opts:   Options{BackoffCap: 3 * time.Second, Jitter: 0.5},
			random: 0.999999,
			want:   []time.Duration{500000500 * time.Nanosecond, 1000001 * time.Microsecond, 1500001500 * time.Nanosecond},
		},
		{
			name: "many failures do not overflow",
			opts: Options{Jitter: -1},
			want: func() []time.Duration {
				d := make([]time.Duration, 200)
				d[0], d[1] = time.Second, 2*time.Second
				for i := 2; i < 200; i++ {
					d[i] = min(time.Second<<i, 60*time.Second)
					if i > 6 {
						d[i] = 60 * time.Second
					}
				}
				return d
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.random = func() float64 { return tt.random }
			o.setDefaults()
			for i, want := range tt.want {
				if got := o.backoff(i + 1); got != want {
					t.Errorf("after %d failures: got %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestRetryWithBackoffThenFail(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	s := NewService(Options{SucceededEvents: true, Clock: clk, MaxAttempts: 3, random: func() float64 { return 0 }})
	defer stop(t, s)

	var calls atomic.Int32
	attempted := make(chan int, 10)
	boom := errors.New("connection refused")
	if err := s.Enqueue("ns.pkg", task("install", func(context.Context) error {
		attempted <- int(calls.Add(1))
		return boom
	})); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("ns.pkg", task("after", nil)); err != nil {
		t.Fatal(err)
	}

	waitAttempt := func(n int) {
		t.Helper()
		select {
		case got := <-attempted:
			if got != n {
				t.Fatalf("attempt %d, want %d", got, n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("attempt %d did not happen", n)
		}
	}
	waitTimer := func() {
		t.Helper()
		eventually.True(t, 10*time.Second, "the worker to wait for its retry", clk.HasWaiters)
	}

	waitAttempt(1)
	waitTimer()
	// The failed task stays at the head, with its error and next retry.
	d := s.Dump()
	if len(d.Queues) != 1 || len(d.Queues[0].Pending) != 2 {
		t.Fatalf("dump: %+v", d)
	}
	head := d.Queues[0].Pending[0]
	if head.Name != "install" || head.Attempts != 1 || head.LastError != "connection refused" ||
		head.NextRetry == nil || !head.NextRetry.Equal(start.Add(time.Second)) {
		t.Fatalf("head = %+v, want install after 1 attempt retried at %v", head, start.Add(time.Second))
	}
	if d.Queues[0].Pending[1].Name != "after" {
		t.Fatalf("second pending = %+v", d.Queues[0].Pending[1])
	}

	clk.Step(999 * time.Millisecond)
	select {
	case <-attempted:
		t.Fatal("retried before the backoff elapsed")
	case <-time.After(50 * time.Millisecond):
	}
	clk.Step(time.Millisecond)
	waitAttempt(2)
	waitTimer()
	if nr := s.Dump().Queues[0].Pending[0].NextRetry; nr == nil || !nr.Equal(start.Add(3*time.Second)) {
		t.Fatalf("second retry at %v, want 2s after the second failure", nr)
	}
	clk.Step(2 * time.Second)
	waitAttempt(3)

	evs := events(t, s, 2)
	if evs[0].Task != "install" || evs[0].Kind != Failed || evs[0].Attempts != 3 || !errors.Is(evs[0].Err, boom) {
		t.Fatalf("first event %+v, want install Failed after 3 attempts with its error", evs[0])
	}
	if evs[1].Task != "after" || evs[1].Kind != Succeeded {
		t.Fatalf("queue did not move on: %+v", evs[1])
	}
	f := s.Dump().Queues[0].Failed
	if len(f) != 1 || f[0].Name != "install" || f[0].Attempts != 3 || f[0].Error != "connection refused" || f[0].FailedAt.IsZero() {
		t.Fatalf("failed list = %+v", f)
	}
}

func TestAttemptLimitAndTerminal(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name         string
		err          error
		opts         []EnqueueOption
		wantAttempts int
	}{
		{name: "MaxAttempts(1) fails at once", err: boom, opts: []EnqueueOption{MaxAttempts(1)}, wantAttempts: 1},
		{name: "MaxAttempts(4)", err: boom, opts: []EnqueueOption{MaxAttempts(4)}, wantAttempts: 4},
		{name: "service default", err: boom, wantAttempts: 2},
		{name: "terminal error is not retried", err: Terminal(boom), opts: []EnqueueOption{MaxAttempts(5)}, wantAttempts: 1},
		{name: "wrapped terminal error is not retried", err: fmt.Errorf("apply: %w", Terminal(boom)), wantAttempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewService(Options{SucceededEvents: true, MaxAttempts: 2, BackoffBase: time.Millisecond})
			defer stop(t, s)
			var calls atomic.Int32
			if err := s.Enqueue("q", task("t", func(context.Context) error { calls.Add(1); return tt.err }), tt.opts...); err != nil {
				t.Fatal(err)
			}
			ev := events(t, s, 1)[0]
			if ev.Kind != Failed || ev.Attempts != tt.wantAttempts || !errors.Is(ev.Err, boom) {
				t.Fatalf("event %+v, want Failed after %d attempts", ev, tt.wantAttempts)
			}
			if int(calls.Load()) != tt.wantAttempts {
				t.Fatalf("ran %d times, want %d", calls.Load(), tt.wantAttempts)
			}
		})
	}
}

func TestTerminalNil(t *testing.T) {
	if Terminal(nil) != nil {
		t.Fatal("Terminal(nil) is not nil")
	}
	if IsTerminal(errors.New("x")) {
		t.Fatal("plain error reported terminal")
	}
}

func TestPanickingTaskFailsWithoutRetry(t *testing.T) {
	s := NewService(Options{SucceededEvents: true, BackoffBase: time.Millisecond})
	defer stop(t, s)
	if err := s.Enqueue("q", task("bad", func(context.Context) error { panic("nil map") })); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("q", task("good", nil)); err != nil {
		t.Fatal(err)
	}
	evs := events(t, s, 2)
	if evs[0].Kind != Failed || evs[0].Attempts != 1 || !strings.Contains(evs[0].Err.Error(), `task "bad" panicked: nil map`) {
		t.Fatalf("got %+v", evs[0])
	}
	if evs[1].Kind != Succeeded {
		t.Fatalf("got %+v", evs[1])
	}
}

func TestOnDone(t *testing.T) {
	s := NewService(Options{SucceededEvents: true, MaxAttempts: 2, BackoffBase: time.Millisecond})
	defer stop(t, s)

	var order []string
	var mu sync.Mutex
	note := func(s string) func() {
		return func() { mu.Lock(); order = append(order, s); mu.Unlock() }
	}
	fails := 1
	// OnDone runs after a success, even one after a retry, and may call
	// back into the service: it runs with no lock held.
	err := s.Enqueue("q", task("flaky", func(context.Context) error {
		if fails > 0 {
			fails--
			return errors.New("once")
		}
		return nil
	}), OnDone(note("flaky done")), OnDone(func() {
		_ = s.Dump()
		if err := s.Enqueue("q", task("from-on-done", nil), OnDone(note("from-on-done done"))); err != nil {
			t.Error(err)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("q", task("broken", func(context.Context) error { return errors.New("no") }), OnDone(note("broken done"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue("q", task("nil-on-done", nil), OnDone(nil)); err != nil {
		t.Fatal(err)
	}
	evs := events(t, s, 4)
	if got, want := kinds(evs), "flaky:Succeeded:2 broken:Failed:2 nil-on-done:Succeeded:1 from-on-done:Succeeded:1"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := strings.Join(order, ","), "flaky done,from-on-done done"; got != want {
		t.Fatalf("OnDone calls %q, want %q", got, want)
	}
}

func TestUnique(t *testing.T) {
	s := NewService(Options{SucceededEvents: true})
	defer stop(t, s)

	g := newGate()
	if err := s.Enqueue("q", g.task("sync")); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)

	var runs atomic.Int32
	var doneCalls atomic.Int32
	sync := func() *funcTask { return task("sync", func(context.Context) error { runs.Add(1); return nil }) }
	onDone := OnDone(func() { doneCalls.Add(1) })
	// The running "sync" does not count as pending: the first is queued.
	for _, opts := range [][]EnqueueOption{{Unique(), onDone}, {Unique(), onDone}, {onDone}, {Unique(), onDone}} {
		if err := s.Enqueue("q", sync(), opts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Enqueue("q", task("other", nil), Unique()); err != nil {
		t.Fatal(err)
	}
	if n := s.Dump().Queues[0].Length; n != 3 {
		t.Fatalf("%d pending, want 3 (sync, sync without Unique, other)", n)
	}
	close(g.release)
	evs := events(t, s, 4)
	if got, want := kinds(evs), "sync:Succeeded:1 sync:Succeeded:1 sync:Succeeded:1 other:Succeeded:1"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if runs.Load() != 2 {
		t.Fatalf("queued sync ran %d times, want 2", runs.Load())
	}
	// Every OnDone is honoured, the skipped tasks' ones by the pending twin.
	if doneCalls.Load() != 4 {
		t.Fatalf("OnDone called %d times, want 4", doneCalls.Load())
	}
}

func TestUniqueIgnoresCancelledTwin(t *testing.T) {
	s := NewService(Options{SucceededEvents: true})
	defer stop(t, s)
	g := newGate()
	if err := s.Enqueue("q", g.task("block")); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)
	old, cancel := context.WithCancel(context.Background())
	var ran atomic.Int32
	if err := s.Enqueue("q", task("sync", func(context.Context) error { ran.Add(1); return nil }), Scope(old), Unique()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.Enqueue("q", task("sync", func(context.Context) error { ran.Add(10); return nil }), Unique()); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if got, want := kinds(events(t, s, 3)), "block:Succeeded:1 sync:Cancelled:0 sync:Succeeded:1"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if ran.Load() != 10 {
		t.Fatalf("ran = %d, want only the live task", ran.Load())
	}
}

func TestScopeCancellation(t *testing.T) {
	t.Run("pending task is dropped", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		defer stop(t, s)
		g := newGate()
		if err := s.Enqueue("q", g.task("block")); err != nil {
			t.Fatal(err)
		}
		g.waitStarted(t)
		scope, cancel := context.WithCancelCause(context.Background())
		var ran, done atomic.Bool
		if err := s.Enqueue("q", task("old", func(context.Context) error { ran.Store(true); return nil }), Scope(scope), OnDone(func() { done.Store(true) })); err != nil {
			t.Fatal(err)
		}
		renewed := errors.New("package updated")
		cancel(renewed)
		close(g.release)
		evs := events(t, s, 2)
		if evs[1].Task != "old" || evs[1].Kind != Cancelled || !errors.Is(evs[1].Err, renewed) || evs[1].Attempts != 0 {
			t.Fatalf("got %+v, want old Cancelled with the scope's cause", evs[1])
		}
		if ran.Load() || done.Load() {
			t.Fatalf("cancelled task ran=%v onDone=%v", ran.Load(), done.Load())
		}
	})
	t.Run("running task sees its context cancelled", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		defer stop(t, s)
		scope, cancel := context.WithCancel(context.Background())
		type key struct{}
		scope = context.WithValue(scope, key{}, "v")
		started := make(chan struct{})
		var done atomic.Bool
		var sawValue atomic.Bool
		err := s.Enqueue("q", task("long", func(ctx context.Context) error {
			sawValue.Store(ctx.Value(key{}) == "v")
			close(started)
			<-ctx.Done()
			return nil // even a nil return does not count as success now
		}), Scope(scope), OnDone(func() { done.Store(true) }))
		if err != nil {
			t.Fatal(err)
		}
		<-started
		cancel()
		ev := events(t, s, 1)[0]
		if ev.Kind != Cancelled || !errors.Is(ev.Err, context.Canceled) || ev.Attempts != 1 {
			t.Fatalf("got %+v", ev)
		}
		if done.Load() {
			t.Fatal("OnDone called for a cancelled task")
		}
		if !sawValue.Load() {
			t.Fatal("the scope's values were not visible to Execute")
		}
	})
	t.Run("task waiting for a retry is dropped at once", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true, BackoffBase: time.Hour})
		defer stop(t, s)
		scope, cancel := context.WithCancel(context.Background())
		failed := make(chan struct{})
		if err := s.Enqueue("q", task("flaky", func(context.Context) error { close(failed); return errors.New("x") }), Scope(scope)); err != nil {
			t.Fatal(err)
		}
		<-failed
		if err := s.Enqueue("q", task("next", nil)); err != nil {
			t.Fatal(err)
		}
		cancel()
		if got, want := kinds(events(t, s, 2)), "flaky:Cancelled:1 next:Succeeded:1"; got != want {
			t.Fatalf("events %q, want %q", got, want)
		}
	})
}

// blockedQueue returns a service whose queue "q" runs a task blocked on
// the returned gate, so that the tasks enqueued next wait side by side.
func blockedQueue(t *testing.T) (*Service, *gate) {
	t.Helper()
	s := NewService(Options{SucceededEvents: true})
	t.Cleanup(func() { stop(t, s) })
	g := newGate()
	if err := s.Enqueue("q", g.task("block")); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)
	return s, g
}

// runLog records the payload of each run, joined by "+".
type runLog struct {
	mu   sync.Mutex
	runs []string
}

func (l *runLog) run(p []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, strings.Join(p, "+"))
}

func (l *runLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.runs, " ")
}

func TestCompaction(t *testing.T) {
	s, g := blockedQueue(t)
	var log runLog
	hr := func(hook, payload string) *hookRun {
		return &hookRun{hook: hook, payload: []string{payload}, run: log.run}
	}
	var doneCalls atomic.Int32
	onDone := OnDone(func() { doneCalls.Add(1) })
	other, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, e := range []struct {
		t    Task
		opts []EnqueueOption
	}{
		{hr("a", "1"), []EnqueueOption{onDone}},
		{hr("a", "2"), []EnqueueOption{onDone}},
		{hr("a", "3"), nil},
		{hr("b", "4"), nil},
		{hr("a", "5"), nil},
		{task("plain", nil), nil},
		{hr("a", "6"), nil},
		{hr("a", "7"), []EnqueueOption{Scope(other)}}, // another scope: kept apart
		{hr("a", "8"), []EnqueueOption{MaxAttempts(1)}},
	} {
		if err := s.Enqueue("q", e.t, e.opts...); err != nil {
			t.Fatal(err)
		}
	}
	close(g.release)
	evs := events(t, s, 8)
	want := "block:Succeeded:1 hook-run a [1,2,3]:Succeeded:1 hook-run b [4]:Succeeded:1 hook-run a [5]:Succeeded:1 plain:Succeeded:1 hook-run a [6]:Succeeded:1 hook-run a [7]:Succeeded:1 hook-run a [8]:Succeeded:1"
	if got := kinds(evs); got != want {
		t.Fatalf("events\n%q\nwant\n%q", got, want)
	}
	if got, want := log.String(), "1+2+3 4 5 6 7 8"; got != want {
		t.Fatalf("runs %q, want %q", got, want)
	}
	if doneCalls.Load() != 2 {
		t.Fatalf("OnDone of merged tasks called %d times, want 2", doneCalls.Load())
	}
}

// badMerge returns nil from Merge: the queue runs the tasks one by one.
type badMerge struct{ hookRun }

func (b *badMerge) Merge(Task) Task { return nil }

func TestCompactionRefusedMergeRunsTasksAlone(t *testing.T) {
	s, g := blockedQueue(t)
	var n atomic.Int32
	for i := range 3 {
		if err := s.Enqueue("q", &badMerge{hookRun{hook: "a", payload: []string{fmt.Sprint(i)}, run: func([]string) { n.Add(1) }}}); err != nil {
			t.Fatal(err)
		}
	}
	close(g.release)
	events(t, s, 4)
	if n.Load() != 3 {
		t.Fatalf("ran %d times, want 3", n.Load())
	}
}

// cappedRun refuses, by returning itself, a merge past two payloads.
type cappedRun struct{ hookRun }

func (c *cappedRun) Merge(next Task) Task {
	n := next.(*cappedRun)
	if len(c.payload)+len(n.payload) > 2 {
		return c
	}
	return &cappedRun{*c.hookRun.Merge(&n.hookRun).(*hookRun)}
}

// A Merge that returns its receiver ends the run there; the refused task
// is neither lost nor run inside the merged one, and starts its own run.
func TestCompactionStopsAtARefusedMerge(t *testing.T) {
	s, g := blockedQueue(t)
	var log runLog
	var doneCalls atomic.Int32
	for i := 1; i <= 5; i++ {
		if err := s.Enqueue("q", &cappedRun{hookRun{hook: "a", payload: []string{fmt.Sprint(i)}, run: log.run}}, OnDone(func() { doneCalls.Add(1) })); err != nil {
			t.Fatal(err)
		}
	}
	close(g.release)
	events(t, s, 4)
	if got, want := log.String(), "1+2 3+4 5"; got != want {
		t.Fatalf("runs %q, want %q", got, want)
	}
	if doneCalls.Load() != 5 {
		t.Fatalf("OnDone called %d times, want once per enqueued task (5)", doneCalls.Load())
	}
}

func TestRemove(t *testing.T) {
	t.Run("waits for the running task and drops pending ones", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		defer stop(t, s)
		g := newGate()
		if err := s.Enqueue("ns.pkg/custom", g.task("running")); err != nil {
			t.Fatal(err)
		}
		g.waitStarted(t)
		if err := s.Enqueue("ns.pkg/custom", task("pending", nil)); err != nil {
			t.Fatal(err)
		}
		removed := make(chan error, 1)
		go func() { removed <- s.Remove(context.Background(), "ns.pkg/custom") }()

		ev := events(t, s, 1)[0]
		if ev.Task != "pending" || ev.Kind != Cancelled || !errors.Is(ev.Err, ErrRemoved) {
			t.Fatalf("got %+v", ev)
		}
		select {
		case err := <-removed:
			t.Fatalf("Remove returned %v while its task was running", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(g.release)
		if err := <-removed; err != nil {
			t.Fatal(err)
		}
		if ev := events(t, s, 1)[0]; ev.Task != "running" || ev.Kind != Succeeded {
			t.Fatalf("got %+v", ev)
		}
		if d := s.Dump(); len(d.Queues) != 0 {
			t.Fatalf("removed queue still dumped: %+v", d)
		}
		// The name is free again.
		if err := s.Enqueue("ns.pkg/custom", task("again", nil)); err != nil {
			t.Fatal(err)
		}
		if ev := events(t, s, 1)[0]; ev.Task != "again" || ev.Kind != Succeeded {
			t.Fatalf("got %+v", ev)
		}
	})
	t.Run("cancels the running task when ctx ends", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		defer stop(t, s)
		g := newGate()
		if err := s.Enqueue("q", g.task("slow")); err != nil {
			t.Fatal(err)
		}
		g.waitStarted(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := s.Remove(ctx, "q")
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `remove queue "q": cancel running task "slow"`) {
			t.Fatalf("Remove = %v", err)
		}
		ev := events(t, s, 1)[0]
		if ev.Kind != Cancelled || !errors.Is(ev.Err, ErrRemoved) {
			t.Fatalf("got %+v", ev)
		}
	})
	t.Run("a new queue of the same name waits for the old worker", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		defer stop(t, s)
		g := newGate()
		if err := s.Enqueue("q", g.task("old")); err != nil {
			t.Fatal(err)
		}
		g.waitStarted(t)
		removed := make(chan error, 1)
		go func() { removed <- s.Remove(context.Background(), "q") }()
		// Enqueue until the queue is gone from the map, then once more.
		newRan := make(chan struct{})
		eventually.True(t, 10*time.Second, "the queue to be removed", func() bool { return len(s.Dump().Queues) == 0 })
		if err := s.Enqueue("q", task("new", func(context.Context) error { close(newRan); return nil })); err != nil {
			t.Fatal(err)
		}
		select {
		case <-newRan:
			t.Fatal("the new queue ran a task while the removed one was still running")
		case <-time.After(50 * time.Millisecond):
		}
		close(g.release)
		<-newRan
		if err := <-removed; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown queue", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		defer stop(t, s)
		if err := s.Remove(context.Background(), "never-created"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStop(t *testing.T) {
	t.Run("running tasks finish in time, pending ones are dropped", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		g := newGate()
		if err := s.Enqueue("a", g.task("running")); err != nil {
			t.Fatal(err)
		}
		g.waitStarted(t)
		if err := s.Enqueue("a", task("pending", nil)); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- s.Stop(context.Background()) }()
		ev := events(t, s, 1)[0]
		if ev.Task != "pending" || ev.Kind != Cancelled || !errors.Is(ev.Err, ErrStopped) {
			t.Fatalf("got %+v", ev)
		}
		// New work is refused while Stop waits.
		var err error
		eventually.True(t, 10*time.Second, "Enqueue during Stop to be refused", func() bool {
			err = s.Enqueue("b", task("late", nil))
			return errors.Is(err, ErrStopped)
		})
		if !strings.Contains(err.Error(), `enqueue task "late" to queue "b": queue service is stopped`) {
			t.Fatalf("unclear error %q", err)
		}
		close(g.release)
		if ev := events(t, s, 1)[0]; ev.Task != "running" || ev.Kind != Succeeded {
			t.Fatalf("got %+v", ev)
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		if _, ok := <-s.Events(); ok {
			t.Fatal("events channel open after Stop")
		}
		if err := s.Stop(context.Background()); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		// A queue that existed before Stop refuses work too.
		if err := s.Enqueue("a", task("after", nil)); !errors.Is(err, ErrStopped) {
			t.Fatalf("Enqueue to a stopped queue = %v", err)
		}
	})
	t.Run("tasks still running when ctx ends are cancelled", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		g1, g2 := newGate(), newGate()
		if err := s.Enqueue("a", g1.task("slow-a")); err != nil {
			t.Fatal(err)
		}
		if err := s.Enqueue("b", g2.task("slow-b")); err != nil {
			t.Fatal(err)
		}
		g1.waitStarted(t)
		g2.waitStarted(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := s.Stop(ctx)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), "slow-a in a") || !strings.Contains(err.Error(), "slow-b in b") {
			t.Fatalf("Stop = %v, want the cancelled tasks named", err)
		}
		var cancelled *CancelledAtStopError
		if !errors.As(err, &cancelled) || len(cancelled.Tasks) != 2 {
			t.Fatalf("Stop = %v, want a CancelledAtStopError naming both tasks", err)
		}
		var got []Event
		for ev := range s.Events() {
			got = append(got, ev)
		}
		if len(got) != 2 || got[0].Kind != Cancelled || got[1].Kind != Cancelled || !errors.Is(got[0].Err, ErrStopped) {
			t.Fatalf("events %+v", got)
		}
		// The second call returns the first one's result.
		if err2 := s.Stop(context.Background()); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("second Stop = %v", err2)
		}
	})
	// failEach makes n queues each fail one task for good, so that n
	// Failed events wait for a reader, and returns once all have failed.
	failEach := func(t *testing.T, s *Service, n int) {
		t.Helper()
		for i := range n {
			if err := s.Enqueue(fmt.Sprint("q", i), task("doomed", func(context.Context) error { return Terminal(errors.New("boom")) })); err != nil {
				t.Fatal(err)
			}
		}
		eventually.NoError(t, 10*time.Second, "every task to fail", func() error {
			failed := 0
			for _, q := range s.Dump().Queues {
				failed += len(q.Failed)
			}
			if failed != n {
				return fmt.Errorf("%d of %d tasks failed", failed, n)
			}
			return nil
		})
	}
	stopWithin := func(t *testing.T, s *Service, ctx context.Context) error {
		t.Helper()
		stopped := make(chan error, 1)
		go func() { stopped <- s.Stop(ctx) }()
		select {
		case err := <-stopped:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Stop hung on an events reader that does not read")
			return nil
		}
	}
	t.Run("an owner that stopped reading events cannot make Stop hang", func(t *testing.T) {
		s := NewService(Options{EventBuffer: 2, EventStall: 20 * time.Millisecond})
		failEach(t, s, 10)
		err := stopWithin(t, s, context.Background())
		if err == nil || !errors.Is(err, ErrReaderStalled) || !strings.Contains(err.Error(), "drop 8 undelivered values") {
			t.Fatalf("Stop = %v, want the 8 events beyond the buffer reported dropped", err)
		}
		// What was in the channel's buffer can still be read.
		var got []Event
		for ev := range s.Events() {
			got = append(got, ev)
		}
		if len(got) != 2 || got[0].Kind != Failed || got[1].Kind != Failed {
			t.Fatalf("events after Stop: %+v", got)
		}
	})
	t.Run("undelivered events are dropped when ctx ends", func(t *testing.T) {
		s := NewService(Options{EventBuffer: 1, EventStall: time.Hour})
		failEach(t, s, 3)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := stopWithin(t, s, ctx)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "drop 2 undelivered values") {
			t.Fatalf("Stop = %v", err)
		}
	})
	t.Run("a slow reader still gets every event", func(t *testing.T) {
		s := NewService(Options{EventBuffer: 1, EventStall: 5 * time.Second})
		failEach(t, s, 20)
		read := make(chan int)
		go func() {
			n := 0
			for range s.Events() {
				n++
				time.Sleep(time.Millisecond)
			}
			read <- n
		}()
		if err := stopWithin(t, s, context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := <-read; n != 20 {
			t.Fatalf("reader got %d of 20 events", n)
		}
	})
	t.Run("stop of an unused service", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("concurrent Stop and Remove", func(t *testing.T) {
		s := NewService(Options{SucceededEvents: true})
		for i := range 10 {
			if err := s.Enqueue(fmt.Sprint(i), task("t", func(ctx context.Context) error { time.Sleep(time.Millisecond); return nil })); err != nil {
				t.Fatal(err)
			}
		}
		go func() {
			for range s.Events() {
			}
		}()
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() { _ = s.Remove(context.Background(), fmt.Sprint(i)) })
		}
		wg.Go(func() { _ = s.Stop(context.Background()) })
		wg.Go(func() { _ = s.Stop(context.Background()) })
		wg.Wait()
	})
}

// nilPtrTask has a Name that dereferences its receiver.
type nilPtrTask struct{ name string }

func (t *nilPtrTask) Name() string                  { return t.name }
func (t *nilPtrTask) Execute(context.Context) error { return nil }

func TestEnqueueBadInput(t *testing.T) {
	s := NewService(Options{SucceededEvents: true})
	defer stop(t, s)
	var typedNil *nilPtrTask
	tests := []struct {
		name    string
		queue   string
		task    Task
		opts    []EnqueueOption
		wantErr error
		wantMsg string
	}{
		{name: "empty queue name", queue: "", task: task("sync", nil), wantErr: ErrEmptyQueueName, wantMsg: `enqueue task "sync": queue name is empty`},
		{name: "nil task", queue: "ns.pkg", task: nil, wantErr: ErrNilTask, wantMsg: `enqueue to queue "ns.pkg": task is nil`},
		{name: "typed nil task", queue: "ns.pkg", task: typedNil, wantErr: ErrNilTask, wantMsg: `enqueue to queue "ns.pkg": task is nil: Name or MergeKey panicked`},
		{name: "zero attempts", queue: "ns.pkg", task: task("sync", nil), opts: []EnqueueOption{MaxAttempts(0)}, wantErr: ErrInvalidOption, wantMsg: `enqueue task "sync" to queue "ns.pkg": MaxAttempts must be at least 1, got 0`},
		{name: "negative attempts", queue: "ns.pkg", task: task("sync", nil), opts: []EnqueueOption{MaxAttempts(-3)}, wantErr: ErrInvalidOption, wantMsg: "got -3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Enqueue(tt.queue, tt.task, tt.opts...)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Enqueue = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
	if d := s.Dump(); len(d.Queues) != 0 {
		t.Fatalf("bad input created queues: %+v", d)
	}
	// Nil options are ignored; the service still works.
	if err := s.Enqueue("ok", task("fine", nil), nil); err != nil {
		t.Fatal(err)
	}
	if ev := events(t, s, 1)[0]; ev.Kind != Succeeded {
		t.Fatalf("got %+v", ev)
	}
}

func TestPackageQueueName(t *testing.T) {
	tests := []struct{ key, custom, want string }{
		{"gadget.trace-exec", "", "gadget.trace-exec"},
		{"gadget.trace-exec", "sync", "gadget.trace-exec/sync"},
		{"kube-system.net.base", "main-hooks", "kube-system.net.base/main-hooks"},
	}
	for _, tt := range tests {
		if got := PackageQueueName(tt.key, tt.custom); got != tt.want {
			t.Errorf("PackageQueueName(%q, %q) = %q, want %q", tt.key, tt.custom, got, tt.want)
		}
	}
}

// TestEventsCarryTheOwner: every way a task ends (succeeded, failed,
// removed with its queue, dropped when its scope ends, merged into a
// compacted run) reports the Owner it was enqueued with, so consumers need
// not parse queue names back into packages.
func TestEventsCarryTheOwner(t *testing.T) {
	s := NewService(Options{SucceededEvents: true, MaxAttempts: 1})
	defer stop(t, s)
	custom := Owner{Package: "ns.pkg", Custom: "sync"}
	main := Owner{Package: "ns.pkg"}
	if custom.QueueName() != "ns.pkg/sync" || main.QueueName() != "ns.pkg" {
		t.Fatalf("QueueName: %q, %q", custom.QueueName(), main.QueueName())
	}
	g := newGate()
	if err := s.Enqueue(custom.QueueName(), g.task("running"), OwnedBy(custom)); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)
	scope, cancel := context.WithCancel(context.Background())
	for _, p := range []string{"a", "b"} {
		if err := s.Enqueue(custom.QueueName(), &hookRun{hook: "h", payload: []string{p}, run: func([]string) {}}, OwnedBy(custom)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Enqueue(custom.QueueName(), task("scoped", nil), OwnedBy(custom), Scope(scope)); err != nil {
		t.Fatal(err)
	}
	cancel()
	close(g.release)
	for _, ev := range events(t, s, 3) {
		if ev.Owner != custom {
			t.Errorf("%s %s: owner %+v, want %+v", ev.Task, ev.Kind, ev.Owner, custom)
		}
	}
	if err := s.Enqueue(main.QueueName(), task("broken", func(context.Context) error { return errors.New("boom") }), OwnedBy(main)); err != nil {
		t.Fatal(err)
	}
	if ev := events(t, s, 1)[0]; ev.Kind != Failed || ev.Owner != main {
		t.Errorf("failed task: %+v, want owner %+v", ev, main)
	}
	g = newGate()
	if err := s.Enqueue(main.QueueName(), g.task("blocking"), OwnedBy(main)); err != nil {
		t.Fatal(err)
	}
	g.waitStarted(t)
	if err := s.Enqueue(main.QueueName(), task("removed", nil), OwnedBy(main)); err != nil {
		t.Fatal(err)
	}
	removed := make(chan error, 1)
	go func() { removed <- s.Remove(context.Background(), main.QueueName()) }()
	if ev := events(t, s, 1)[0]; ev.Kind != Cancelled || ev.Owner != main {
		t.Errorf("removed task: %+v, want owner %+v", ev, main)
	}
	close(g.release)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if ev := events(t, s, 1)[0]; ev.Owner != main {
		t.Errorf("%+v, want owner %+v", ev, main)
	}
	if err := s.Enqueue("other", task("unowned", nil)); err != nil {
		t.Fatal(err)
	}
	if ev := events(t, s, 1)[0]; ev.Owner != (Owner{}) {
		t.Errorf("a task enqueued without OwnedBy: owner %+v, want none", ev.Owner)
	}
}

func TestSucceededEventsOptIn(t *testing.T) {
	s := NewService(Options{MaxAttempts: 1})
	defer stop(t, s)
	done := make(chan struct{})
	if err := s.Enqueue("ns.pkg", task("ok", nil), OnDone(func() { close(done) })); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := s.Enqueue("ns.pkg", task("broken", func(context.Context) error { return errors.New("boom") })); err != nil {
		t.Fatal(err)
	}
	// Without SucceededEvents the success is not reported; the failure is,
	// and it is the first event.
	if got, want := kinds(events(t, s, 1)), "broken:Failed:1"; got != want {
		t.Fatalf("events = %q, want %q", got, want)
	}
	noMoreEvents(t, s)
}
