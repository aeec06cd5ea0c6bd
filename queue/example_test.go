package queue_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gadgetpm/gadgetpm/queue"
)

type step struct {
	name string
	err  error
}

func (s step) Name() string                  { return s.name }
func (s step) Execute(context.Context) error { return s.err }

func Example() {
	s := queue.NewService(queue.Options{BackoffBase: time.Millisecond, SucceededEvents: true})
	q := queue.PackageQueueName("gadget.trace-exec", "")

	_ = s.Enqueue(q, step{name: "download"}, queue.OnDone(func() { fmt.Println("downloaded") }))
	_ = s.Enqueue(q, step{name: "install", err: errors.New("chart not found")}, queue.MaxAttempts(2))
	_ = s.Enqueue(q, step{name: "run"})

	for range 3 {
		ev := <-s.Events()
		fmt.Println(ev.Queue, ev.Task, ev.Kind, ev.Attempts, ev.Err)
	}
	_ = s.Stop(context.Background())
	// Output:
	// downloaded
	// gadget.trace-exec download Succeeded 1 <nil>
	// gadget.trace-exec install Failed 2 chart not found
	// gadget.trace-exec run Succeeded 1 <nil>
}
