package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// funcTask runs fn.
type funcTask struct {
	name string
	fn   func(ctx context.Context) error
}

func (t *funcTask) Name() string { return t.name }
func (t *funcTask) Execute(ctx context.Context) error {
	if t.fn == nil {
		return nil
	}
	return t.fn(ctx)
}

func task(name string, fn func(ctx context.Context) error) *funcTask {
	return &funcTask{name: name, fn: fn}
}

// hookRun is a Mergeable task whose payload records what it was merged
// from; run receives the payload when it executes.
type hookRun struct {
	hook    string
	payload []string
	run     func(payload []string)
}

func (h *hookRun) Name() string {
	return "hook-run " + h.hook + " [" + strings.Join(h.payload, ",") + "]"
}
func (h *hookRun) MergeKey() string { return h.hook }
func (h *hookRun) Merge(next Task) Task {
	n := next.(*hookRun)
	p := append(append([]string(nil), h.payload...), n.payload...)
	return &hookRun{hook: h.hook, payload: p, run: h.run}
}
func (h *hookRun) Execute(context.Context) error {
	h.run(h.payload)
	return nil
}

// gate blocks a task until released, telling the test when it started.
type gate struct {
	started chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) task(name string) *funcTask {
	return task(name, func(ctx context.Context) error {
		close(g.started)
		select {
		case <-g.release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

func (g *gate) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("gate task did not start")
	}
}

// events reads n events or fails.
func events(t *testing.T, s *Service, n int) []Event {
	t.Helper()
	var out []Event
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("events channel closed after %d of %d events: %v", len(out), n, out)
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatalf("got %d of %d events: %v", len(out), n, out)
		}
	}
	return out
}

// noMoreEvents fails if an event arrives within a short while.
func noMoreEvents(t *testing.T, s *Service) {
	t.Helper()
	select {
	case ev := <-s.Events():
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func stop(t *testing.T, s *Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		for range s.Events() {
		}
	}()
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func kinds(evs []Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s:%s:%d ", ev.Task, ev.Kind, ev.Attempts)
	}
	return strings.TrimSpace(b.String())
}
