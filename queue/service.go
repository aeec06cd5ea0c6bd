package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/gadgetpm/gadgetpm/queue/outbox"
)

// EventKind says how a task ended.
type EventKind string

// How a task ended.
const (
	// Succeeded: an attempt returned nil.
	Succeeded EventKind = "Succeeded"
	// Failed: the task used its last attempt, or returned a Terminal
	// error, and moved to its queue's failed list. The owner of the queue
	// marks what the task stood for as stalled.
	Failed EventKind = "Failed"
	// Cancelled: the task's scope ended, or Remove or Stop dropped it or
	// cancelled its running attempt.
	Cancelled EventKind = "Cancelled"
)

// Event reports the end of one task.
type Event struct {
	// Queue is the queue's name.
	Queue string
	// Task is the task's Name.
	Task string
	// Kind says how it ended.
	Kind EventKind
	// Err is the last attempt's error for Failed, the cause for Cancelled
	// (the scope's cause, ErrRemoved or ErrStopped), nil for Succeeded.
	Err error
	// Attempts is how many times the task ran.
	Attempts int
	// Owner is the task's owner given with OwnedBy; zero without one.
	Owner Owner
}

// Service runs named FIFO queues, one worker goroutine each; a queue is
// created by the first Enqueue that names it.
//
// Guarantees: tasks of one queue run one at a time in the order they were
// enqueued (a failed task stays at the head until it succeeds, fails for
// good or is cancelled); queues never wait for each other; Enqueue never
// blocks on a running task; no callback (OnDone, task methods, metrics)
// runs under a lock. Every task that fails or is cancelled ends in exactly
// one Event; a task that succeeds does too when Options.SucceededEvents is
// set. Tasks skipped by Unique have no event of their own.
//
// A Service is safe for concurrent use. Its goroutines are stopped and
// waited for by Stop.
type Service struct {
	opts    Options
	epoch   time.Time   // task times are durations since epoch (see since)
	clock   *burstClock // reads since-epoch times; see burstClock
	events  *outbox.Outbox[Event]
	workers sync.WaitGroup // one per queue worker ever started
	rings   ringPool       // spare ring arrays of idle queues

	// live is a read-only snapshot of queues for Enqueue's lookup, which
	// then takes no Service-wide lock; it is replaced, under mu, whenever
	// queues changes.
	live atomic.Pointer[map[string]*queue]

	stopDone chan struct{} // closed when the first Stop has finished

	mu sync.Mutex
	// Guarded by mu. queues holds live queues by name; retiring holds
	// queues taken out by Remove whose worker may still be running (a new
	// queue of the same name waits for it). Once stopping is set, no
	// worker is started any more.
	queues   map[string]*queue
	retiring map[string]*queue
	stopping bool
	stopErr  error // valid once stopDone is closed
}

// NewService returns a Service with opts' zero fields set to their
// defaults. It starts no goroutine; workers start with their queues, and
// the clock cache's goroutine with the first burst of tasks.
func NewService(opts Options) *Service {
	opts.setDefaults()
	epoch := opts.Clock.Now()
	tick := time.Duration(0) // an injected clock is read every time
	switch opts.Clock.(type) {
	case clock.RealClock, *clock.RealClock:
		tick = defaultTick
	}
	s := &Service{
		opts:     opts,
		epoch:    epoch,
		clock:    newBurstClock(func() time.Duration { return opts.Clock.Since(epoch) }, tick),
		events:   outbox.NewWithOptions[Event](outbox.Options{Buffer: opts.EventBuffer, Stall: opts.EventStall}),
		stopDone: make(chan struct{}),
		queues:   make(map[string]*queue),
		retiring: make(map[string]*queue),
	}
	s.publish()
	return s
}

// publish replaces the snapshot Enqueue reads with a copy of s.queues;
// s.mu must be held. Queues are created and removed rarely, so copying
// the map then is cheaper than a shared lock on every Enqueue.
func (s *Service) publish() {
	m := make(map[string]*queue, len(s.queues))
	for name, q := range s.queues {
		m[name] = q
	}
	s.live.Store(&m)
}

// Events delivers one Event per task that failed or was cancelled (and per
// task that succeeded, with Options.SucceededEvents), in the order they
// ended (so in FIFO order within a queue). Events wait in memory until
// read, so the owner must keep reading until it calls Stop. The channel is
// closed by Stop (see there for what happens to events still unread).
func (s *Service) Events() <-chan Event { return s.events.C() }

// since tells the time as a duration since the Service's epoch: only the
// clock's monotonic part is read (a full wall-clock read costs a second
// read), during bursts not even that (see burstClock), and a duration is
// cheaper to store and compare than a time.Time. at turns it back into a
// time for a dump.
func (s *Service) since() time.Duration { return s.clock.since() }

func (s *Service) at(d time.Duration) time.Time { return s.epoch.Add(d) }

// Enqueue appends t to the named queue, creating the queue and its worker
// if needed, and returns without waiting for t to run.
//
// It returns an error wrapping ErrStopped after Stop has begun,
// ErrEmptyQueueName, ErrNilTask, or ErrInvalidOption (MaxAttempts below 1);
// nothing is queued then.
func (s *Service) Enqueue(queueName string, t Task, opts ...EnqueueOption) error {
	if t == nil {
		return fmt.Errorf("enqueue to queue %q: %w", queueName, ErrNilTask)
	}
	name, mergeKey, err := describe(t)
	if err != nil {
		return fmt.Errorf("enqueue to queue %q: %w", queueName, err)
	}
	if queueName == "" {
		return fmt.Errorf("enqueue task %q: %w", name, ErrEmptyQueueName)
	}
	var eo enqueueOptions
	if len(opts) > 0 {
		// Options write through a pointer, which escapes; only pay for
		// that when there are options.
		p := new(enqueueOptions)
		for _, o := range opts {
			if o != nil {
				o(p)
			}
		}
		eo = *p
	}
	maxAttempts := s.opts.MaxAttempts
	if eo.maxAttemptsSet {
		if eo.maxAttempts < 1 {
			return fmt.Errorf("enqueue task %q to queue %q: MaxAttempts must be at least 1, got %d: %w",
				name, queueName, eo.maxAttempts, ErrInvalidOption)
		}
		maxAttempts = eo.maxAttempts
	}

	// rec stays on the stack; add copies it into the queue's ring.
	rec := item{
		task:        t,
		name:        name,
		mergeKey:    mergeKey,
		onDone:      eo.onDone,
		scope:       eo.scope,
		owner:       eo.owner,
		maxAttempts: maxAttempts,
		enqueuedAt:  s.since(),
	}
	for fast := true; ; fast = false {
		q, err := s.queueFor(queueName, fast)
		if err != nil {
			return fmt.Errorf("enqueue task %q to queue %q: %w", name, queueName, err)
		}
		if q.add(&rec, eo.unique) {
			return nil
		}
		// Remove or Stop closed q between the lookup and the add: look
		// again past the snapshot, which makes a fresh queue or reports
		// ErrStopped.
	}
}

// describe asks t for its name and merge key, turning a panic (a nil
// pointer inside an interface, say) into an error.
func describe(t Task) (name, mergeKey string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: Name or MergeKey panicked: %v", ErrNilTask, r)
		}
	}()
	name = t.Name()
	if m, ok := t.(Mergeable); ok {
		mergeKey = m.MergeKey()
	}
	return name, mergeKey, nil
}

// queueFor returns the live queue of that name, creating it and starting
// its worker if needed. fast looks in the snapshot first; a caller whose
// add found the queue closed (by Remove or Stop) asks again without it.
func (s *Service) queueFor(name string, fast bool) (*queue, error) {
	if fast {
		if q := (*s.live.Load())[name]; q != nil {
			return q, nil
		}
	}

	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil, ErrStopped
	}
	if q := s.queues[name]; q != nil {
		s.mu.Unlock()
		return q, nil
	}
	s.mu.Unlock()

	// The provider is outside code: ask it without the lock held. It
	// reads the length when it reports it, from whichever queue of that
	// name is live then.
	m := s.opts.Metrics.ForQueue(name, func() int { return s.length(name) })

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, ErrStopped
	}
	if q := s.queues[name]; q != nil {
		return q, nil
	}
	q := newQueue(name, m, s.retiring[name], &s.rings)
	s.queues[name] = q
	s.publish()
	s.workers.Add(1)
	go s.work(q)
	return q, nil
}

// length returns the number of pending tasks of the live queue of that
// name, zero when there is none. It is read when metrics are scraped, so
// Enqueue and the worker keep no separate count.
func (s *Service) length(name string) int {
	q := (*s.live.Load())[name]
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending.len()
}

// Remove stops the named queue: its pending tasks are dropped and reported
// Cancelled with ErrRemoved, its running task may finish until ctx ends and
// is then cancelled, and Remove returns when the worker has exited. Tasks
// enqueued under the same name afterwards go to a new queue. Removing a
// queue that does not exist does nothing. A task must not Remove its own
// queue: Remove would wait for the task that called it.
func (s *Service) Remove(ctx context.Context, queueName string) error {
	s.mu.Lock()
	q := s.queues[queueName]
	if q == nil {
		q = s.retiring[queueName]
	}
	if q == nil {
		s.mu.Unlock()
		return nil
	}
	if !s.stopping && s.queues[queueName] == q {
		delete(s.queues, queueName)
		s.publish()
		s.retiring[queueName] = q
	}
	s.mu.Unlock()

	for _, ev := range q.close(ErrRemoved) {
		s.events.Put(ev)
	}
	err := q.wait(ctx, ErrRemoved)

	s.mu.Lock()
	if s.retiring[queueName] == q {
		delete(s.retiring, queueName)
	}
	_, reused := s.queues[queueName]
	s.mu.Unlock()
	if !reused {
		s.opts.Metrics.Forget(queueName)
	}
	if err != nil {
		return fmt.Errorf("remove queue %q: %w", queueName, err)
	}
	return nil
}

// Stop refuses new tasks, drops pending ones (reported Cancelled with
// ErrStopped), lets running tasks finish until ctx ends, then cancels them,
// and waits for every worker. Then it closes the Events channel: events in
// the channel's buffer stay readable, and the ones beyond it are delivered
// while the reader keeps taking them — until ctx ends, or at once if the
// reader takes none for Options.EventStall (an owner that stopped reading
// cannot make Stop hang) — and the rest are dropped.
//
// It returns nil when everything finished in time, or an error saying what
// had to be cancelled or dropped (wrapping ctx's error or ErrReaderStalled). Calling Stop again waits for the first
// call (or for its own ctx) and returns the same result.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		select {
		case <-s.stopDone:
			return s.stopErr
		case <-ctx.Done():
			return fmt.Errorf("wait for the queue service to stop: %w", ctx.Err())
		}
	}
	s.stopping = true
	all := make([]*queue, 0, len(s.queues)+len(s.retiring))
	for _, q := range s.queues {
		all = append(all, q)
	}
	for _, q := range s.retiring {
		all = append(all, q)
	}
	s.mu.Unlock()

	for _, q := range all {
		for _, ev := range q.close(ErrStopped) {
			s.events.Put(ev)
		}
	}

	finished := make(chan struct{})
	go func() { s.workers.Wait(); close(finished) }()
	var errs []error
	select {
	case <-finished:
	case <-ctx.Done():
		var names []string
		for _, q := range all {
			if task := q.cancelRunning(ErrStopped); task != "" {
				names = append(names, fmt.Sprintf("%s in %s", task, q.name))
			}
		}
		<-finished
		if len(names) > 0 {
			errs = append(errs, &CancelledAtStopError{Tasks: names, Err: ctx.Err()})
		}
	}
	s.clock.stop()
	if err := s.events.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("deliver events: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		s.stopErr = fmt.Errorf("stop queues: %w", err)
	}
	close(s.stopDone)
	return s.stopErr
}
