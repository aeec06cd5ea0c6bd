package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Options configure an Outbox. The zero value means every default.
type Options struct {
	// Buffer is the channel's buffer. Default, and minimum, 1.
	Buffer int
	// Stall is how long Close waits for the reader to take the next value
	// before it drops the undelivered rest, so that a reader that stopped
	// reading cannot make Close hang. Zero or less means DefaultStall.
	Stall time.Duration
}

// DefaultStall is the default Options.Stall.
const DefaultStall = time.Second

// ErrStalled is the cause of values dropped by Close because the reader
// took none for Options.Stall.
var ErrStalled = errors.New("the reader took no value")

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
	stall   time.Duration
	sent    chan struct{} // capacity 1: the delivery goroutine sent a value
	abandon chan struct{} // closed by Close to drop the backlog
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

// New returns an Outbox whose channel has the given buffer (below 1 means
// 1) and the default Stall.
func New[T any](buffer int) *Outbox[T] { return NewWithOptions[T](Options{Buffer: buffer}) }

// NewWithOptions returns an Outbox with opts' zero fields set to their
// defaults.
func NewWithOptions[T any](opts Options) *Outbox[T] {
	if opts.Buffer < 1 {
		opts.Buffer = 1
	}
	if opts.Stall <= 0 {
		opts.Stall = DefaultStall
	}
	return &Outbox[T]{
		ch:      make(chan T, opts.Buffer),
		stall:   opts.Stall,
		sent:    make(chan struct{}, 1),
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
			select {
			case o.sent <- struct{}{}:
			default:
			}
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

// Close refuses further values and closes C after the values still
// waiting are delivered, as long as the reader keeps taking them: it stops
// waiting when ctx ends or when the reader has taken no value for
// Options.Stall, drops what is left and says so in its error (wrapping
// ctx's cause or ErrStalled). Values already in the channel's buffer stay
// readable after C is closed. Close waits for the delivery goroutine and
// never waits on a reader that stopped reading for longer than the stall.
// Calling Close again waits for the first call and returns its result.
func (o *Outbox[T]) Close(ctx context.Context) error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closing = true
		o.mu.Unlock()

		finished := make(chan struct{})
		go func() { o.wg.Wait(); close(finished) }()
		stall := time.NewTimer(o.stall)
		defer stall.Stop()
		var cause error
	wait:
		for {
			select {
			case <-finished:
				break wait
			case <-o.sent:
				stall.Reset(o.stall)
			case <-stall.C:
				cause = fmt.Errorf("%w for %s", ErrStalled, o.stall)
				break wait
			case <-ctx.Done():
				cause = context.Cause(ctx)
				break wait
			}
		}
		if cause != nil {
			close(o.abandon)
			<-finished
		}

		o.mu.Lock()
		dropped := o.dropped
		o.mu.Unlock()
		close(o.ch)
		if dropped > 0 {
			o.closeErr = fmt.Errorf("drop %d undelivered values: %w", dropped, cause)
		}
		close(o.done)
	})
	<-o.done
	return o.closeErr
}
