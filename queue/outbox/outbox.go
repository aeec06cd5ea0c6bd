package outbox

import (
	"context"
	"fmt"
	"sync"
)

// Outbox delivers values put into it on a channel, in the order they were
// put, without blocking Put. Values wait in memory until the reader takes
// them, so the reader must keep reading C.
//
// While the channel's buffer has room and nothing is waiting, Put sends
// directly; otherwise one delivery goroutine, owned by the Outbox, runs
// until the backlog is empty and then exits. Close stops it and waits.
//
// An Outbox is safe for concurrent use.
type Outbox[T any] struct {
	ch      chan T
	abandon chan struct{} // closed by Close when its ctx ends: drop the backlog
	done    chan struct{} // closed when Close has finished

	mu sync.Mutex
	// Guarded by mu. backlog holds values not yet sent, oldest first; while
	// delivering is true a goroutine owns the head of the line (it may hold
	// a value taken from backlog), so Put must append rather than send.
	backlog    []T
	delivering bool
	closing    bool
	dropped    int // values abandoned by Close
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
}

// New returns an Outbox whose channel has the given buffer; a buffer below
// 1 means 1.
func New[T any](buffer int) *Outbox[T] {
	if buffer < 1 {
		buffer = 1
	}
	return &Outbox[T]{
		ch:      make(chan T, buffer),
		abandon: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// C is the channel values are delivered on. It is closed by Close after
// the last delivery.
func (o *Outbox[T]) C() <-chan T { return o.ch }

// Put queues v for delivery and returns at once. After Close has begun, v
// is dropped.
func (o *Outbox[T]) Put(v T) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return
	}
	if !o.delivering && len(o.backlog) == 0 {
		select {
		case o.ch <- v:
			return
		default:
		}
	}
	o.backlog = append(o.backlog, v)
	if !o.delivering {
		o.delivering = true
		o.wg.Add(1)
		go o.deliver()
	}
}

func (o *Outbox[T]) deliver() {
	defer o.wg.Done()
	var zero T
	for {
		o.mu.Lock()
		if len(o.backlog) == 0 {
			o.delivering = false
			o.backlog = nil
			o.mu.Unlock()
			return
		}
		v := o.backlog[0]
		o.backlog[0] = zero
		o.backlog = o.backlog[1:]
		o.mu.Unlock()

		select {
		case o.ch <- v:
		case <-o.abandon:
			o.mu.Lock()
			o.dropped += 1 + len(o.backlog)
			o.backlog = nil
			o.delivering = false
			o.mu.Unlock()
			return
		}
	}
}

// Close refuses further values, delivers the backlog until ctx ends, drops
// what is left, closes C and waits for the delivery goroutine. It returns
// an error saying how many values were dropped, if any. Calling Close again
// waits for the first call and returns its result.
func (o *Outbox[T]) Close(ctx context.Context) error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closing = true
		o.mu.Unlock()

		finished := make(chan struct{})
		go func() { o.wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-ctx.Done():
			close(o.abandon)
			<-finished
		}

		o.mu.Lock()
		dropped := o.dropped
		o.mu.Unlock()
		close(o.ch)
		if dropped > 0 {
			o.closeErr = fmt.Errorf("drop %d undelivered values: %w", dropped, context.Cause(ctx))
		}
		close(o.done)
	})
	<-o.done
	return o.closeErr
}
