package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// Every accepted task ends in exactly one event, and within a queue the
// tasks of one producer run in the order that producer enqueued them, while
// queues are removed and re-created under load.
func TestStressEveryTaskEndsOnceInOrder(t *testing.T) {
	s := NewService(Options{SucceededEvents: true})
	const producers, perProducer, queues = 6, 300, 8

	var mu sync.Mutex
	lastRun := map[string]map[int]int{} // queue -> producer -> last seq run
	outOfOrder := 0
	ended := map[string]int{}
	accepted := 0

	var evWG sync.WaitGroup
	evWG.Go(func() {
		for ev := range s.Events() {
			mu.Lock()
			ended[ev.Task]++
			mu.Unlock()
		}
	})

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				qn := fmt.Sprintf("ns.pkg-%d", i%queues)
				name := fmt.Sprintf("p%d-%d", p, i)
				err := s.Enqueue(qn, task(name, func(context.Context) error {
					mu.Lock()
					defer mu.Unlock()
					if lastRun[qn] == nil {
						lastRun[qn] = map[int]int{}
					}
					if prev, ok := lastRun[qn][p]; ok && prev >= i {
						outOfOrder++
					}
					lastRun[qn][p] = i
					return nil
				}))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			_ = s.Remove(context.Background(), fmt.Sprintf("ns.pkg-%d", i%queues))
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	// Let the queues drain, then stop.
	eventually.True(t, 10*time.Second, "every accepted task to end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range ended {
			n += c
		}
		return n == accepted
	})
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	evWG.Wait()

	mu.Lock()
	defer mu.Unlock()
	if accepted != producers*perProducer {
		t.Fatalf("accepted %d of %d", accepted, producers*perProducer)
	}
	if len(ended) != accepted {
		t.Fatalf("%d distinct tasks ended, %d accepted", len(ended), accepted)
	}
	for name, c := range ended {
		if c != 1 {
			t.Fatalf("task %s ended %d times", name, c)
		}
	}
	if outOfOrder != 0 {
		t.Fatalf("%d tasks ran before an earlier task of the same producer and queue", outOfOrder)
	}
}
