package scheduler

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// Under concurrent changes the last event of every package matches its
// final status: events are published in the order changes were made.
func TestConcurrentChangesEndConsistent(t *testing.T) {
	s := New(Options{EventBuffer: 1})
	s.Resume()
	last := map[string]Event{}
	var readers sync.WaitGroup
	readers.Go(func() {
		for ev := range s.Events() {
			last[ev.Key] = ev
		}
	})

	must(t, s.AddPackage(pkg("ns.base", "1.0.0")))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("ns.p%d", w)
				p := pkg(key, "1.0.0", "ns.base")
				p.Enabled = i%3 != 0
				if err := s.AddPackage(p); err != nil {
					t.Error(err)
				}
				if err := s.SetState("ns.base", i%2 == 0, fmt.Sprintf("1.%d.0", i)); err != nil {
					t.Error(err)
				}
				_ = s.Statuses()
				_, _ = s.Order()
			}
		})
	}
	wg.Wait()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	readers.Wait()
	for _, st := range s.Statuses() {
		ev, ok := last[st.Key]
		if !ok {
			t.Fatalf("no event for %s", st.Key)
		}
		if ev.Status != st {
			t.Fatalf("%s: last event %+v, status %+v", st.Key, ev.Status, st)
		}
	}
}
