package queue

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// item is one queued task and its bookkeeping.
type item struct {
	task        Task
	name        string
	mergeKey    string
	onDone      func() // guarded by the queue's mu: Unique adds to it
	scope       context.Context
	maxAttempts int
	enqueuedAt  time.Time

	// Written by the worker under the queue's mu.
	attempts   int
	nextRetry  time.Time
	lastErr    string
	mergeTried bool
}

func (it *item) scopeDone() <-chan struct{} {
	if it.scope == nil {
		return nil
	}
	return it.scope.Done()
}

func (it *item) cancelled() bool { return it.scope != nil && it.scope.Err() != nil }

// failedTask is an entry of a queue's failed list.
type failedTask struct {
	name       string
	enqueuedAt time.Time
	failedAt   time.Time
	attempts   int
	err        string
}

// queue is one named FIFO queue and the state its worker shares with
// Enqueue, Remove, Stop and Dump.
type queue struct {
	name    string
	metrics QueueMetrics
	wake    chan struct{} // capacity 1: a task was added while the worker idled
	quit    chan struct{} // closed once by close
	done    chan struct{} // closed when the worker has returned
	prev    *queue        // a removed queue of the same name to wait for
	length  atomic.Int64  // len(pending), for metrics read outside mu

	mu sync.Mutex
	// Guarded by mu. pending is FIFO and excludes the running task; a task
	// waiting for its retry is pending[0]. idle is set by the worker just
	// before it waits for wake. Once closing is set, pending stays empty
	// and no task starts.
	pending      fifo
	running      *item
	runningSince time.Time
	cancelWorker context.CancelCauseFunc // hard stop: cancels the running attempt
	failed       []failedTask
	free         []*item // records of ended tasks, reused by add
	idle         bool
	closing      bool
	closeCause   error
}

func newQueue(name string, m QueueMetrics, prev *queue) *queue {
	return &queue{
		name:    name,
		metrics: m,
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		prev:    prev,
	}
}

// maxFree bounds a queue's free list. The list is dropped whenever the
// worker goes idle, so records are kept only while the queue is busy.
const maxFree = 1024

// add appends a task described by rec, or with unique folds it into an
// equal-named pending task. It reports false when the queue is closing.
func (q *queue) add(rec *item, unique bool) bool {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return false
	}
	if unique {
		for _, p := range q.pending.items() {
			if p.name == rec.name && !p.cancelled() {
				p.onDone = chain(p.onDone, rec.onDone)
				q.mu.Unlock()
				return true
			}
		}
	}
	// Records of ended tasks are reused: a busy queue then allocates
	// nothing per task.
	var it *item
	if n := len(q.free); n > 0 {
		it = q.free[n-1]
		q.free[n-1] = nil
		q.free = q.free[:n-1]
	} else {
		it = new(item)
	}
	*it = *rec
	q.pending.push(it)
	q.length.Store(int64(q.pending.len()))
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// release returns the record of an ended task for reuse; q.mu must be
// held and nothing may use it afterwards.
func (q *queue) release(it *item) {
	if len(q.free) < maxFree {
		*it = item{}
		q.free = append(q.free, it)
	}
}

func chain(a, b func()) func() {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func() { a(); b() }
}

func (q *queue) reportLength() { q.metrics.SetLength(int(q.length.Load())) }

// close stops the queue from starting tasks and returns the Cancelled
// events of the pending tasks it dropped. Only the first call does
// anything.
func (q *queue) close(cause error) []Event {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return nil
	}
	q.closing = true
	q.closeCause = cause
	close(q.quit)
	dropped := q.pending.takeAll()
	q.length.Store(0)
	q.mu.Unlock()

	q.reportLength()
	events := make([]Event, 0, len(dropped))
	for _, it := range dropped {
		events = append(events, Event{Queue: q.name, Task: it.name, Kind: Cancelled, Err: cause, Attempts: it.attempts})
	}
	return events
}

// cancelRunning cancels the running attempt, if any, and returns its
// task's name.
func (q *queue) cancelRunning(cause error) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running == nil || q.cancelWorker == nil {
		return ""
	}
	q.cancelWorker(cause)
	return q.running.name
}

// wait waits for the worker of a closed queue to return; when ctx ends
// first it cancels the running attempt and keeps waiting.
func (q *queue) wait(ctx context.Context, cause error) error {
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
	}
	task := q.cancelRunning(cause)
	<-q.done
	if task == "" {
		return nil
	}
	return fmt.Errorf("cancel running task %q: %w", task, ctx.Err())
}

// work is the queue's worker: it runs tasks until the queue is closed.
//
// The attempt context derives from a worker context that only a hard stop
// (Remove or Stop whose ctx ended) cancels, so a task without a scope costs
// no context of its own.
func (s *Service) work(q *queue) {
	defer s.workers.Done()
	defer close(q.done)
	if q.prev != nil {
		<-q.prev.done
	}
	workerCtx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	q.mu.Lock()
	q.cancelWorker = cancel
	q.mu.Unlock()

	// last is when the previous attempt ended, reused as the next start
	// while the worker runs tasks back to back: clock reads are not free.
	//
	// locked says that run returned with q.mu still held: a plain success
	// has nothing to do outside the lock, so the worker settles it and
	// picks the next task under one lock acquisition.
	var last time.Time
	locked := false
	for {
		it, now, ok := s.next(q, last, locked)
		if !ok {
			return
		}
		last, locked = s.run(workerCtx, q, it, now)
	}
}

// next waits for the head task to be due and marks it running, returning
// it and its start time. It drops cancelled tasks on the way, compacts
// mergeable ones, and reports false once the queue is closing. last, when
// set, is a recent time to use instead of reading the clock. locked says
// the caller holds q.mu already.
func (s *Service) next(q *queue, last time.Time, locked bool) (*item, time.Time, bool) {
	yielded := false
	for {
		if !locked {
			q.mu.Lock()
		}
		locked = false
		if q.closing {
			q.mu.Unlock()
			return nil, time.Time{}, false
		}
		if q.pending.len() == 0 {
			if !yielded {
				// Let a producer on this P enqueue before paying for a
				// park and a wake-up.
				q.mu.Unlock()
				runtime.Gosched()
				yielded = true
				last = time.Time{}
				continue
			}
			yielded = false
			q.idle = true
			q.free = nil // an idle queue holds no spare records
			q.mu.Unlock()
			select {
			case <-q.wake:
			case <-q.quit:
			}
			last = time.Time{}
			continue
		}
		it := q.pending.front()
		if it.cancelled() {
			q.popHead()
			ev := Event{Queue: q.name, Task: it.name, Kind: Cancelled, Err: context.Cause(it.scope), Attempts: it.attempts}
			q.release(it)
			q.mu.Unlock()
			q.reportLength()
			s.events.Put(ev)
			continue
		}
		now := last
		if now.IsZero() || it.enqueuedAt.After(now) {
			now = s.now()
		}
		if it.nextRetry.After(now) {
			t := s.opts.Clock.NewTimer(it.nextRetry.Sub(now))
			done := it.scopeDone()
			q.mu.Unlock()
			select {
			case <-t.C():
			case <-q.quit:
			case <-done:
			}
			t.Stop()
			last = time.Time{}
			continue
		}
		if it.attempts == 0 && it.mergeKey != "" && !it.mergeTried {
			it.mergeTried = true
			if s.compact(q, it) {
				last = time.Time{}
				continue
			}
		}

		q.popHead()
		it.attempts++
		q.running, q.runningSince = it, now
		q.mu.Unlock()
		q.reportLength()
		if it.attempts == 1 {
			q.metrics.ObserveWait(now.Sub(it.enqueuedAt))
		}
		return it, now, true
	}
}

// popHead removes pending[0]; q.mu must be held.
func (q *queue) popHead() {
	q.pending.pop()
	q.length.Store(int64(q.pending.len()))
}

// compact merges the pending tasks right behind head that share its merge
// key (and its scope and attempt limit) into head. It is called with q.mu
// held and head at pending[0], returns with q.mu released, and reports
// whether the caller must look at the queue again.
func (s *Service) compact(q *queue, head *item) bool {
	var run []*item
	for _, p := range q.pending.items()[1:] {
		if p.mergeKey != head.mergeKey || p.scope != head.scope || p.maxAttempts != head.maxAttempts {
			break
		}
		run = append(run, p)
	}
	if len(run) == 0 {
		q.mu.Unlock()
		return true
	}
	q.mu.Unlock()

	// Merge is the task's code: call it without the lock. Only this worker
	// removes pending tasks, so run is still behind head afterwards unless
	// the queue was closed.
	merged, name := mergeTasks(head.task, run)
	if merged == nil {
		return true
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return true
	}
	onDone := head.onDone
	for _, p := range run {
		onDone = chain(onDone, p.onDone)
	}
	q.pending.replaceFront(&item{
		task:        merged,
		name:        name,
		mergeKey:    head.mergeKey,
		onDone:      onDone,
		scope:       head.scope,
		maxAttempts: head.maxAttempts,
		enqueuedAt:  head.enqueuedAt,
		mergeTried:  true,
	}, len(run))
	q.length.Store(int64(q.pending.len()))
	return true
}

// mergeTasks folds run into first. It returns nil when a Merge returns nil
// or panics, and then nothing is merged.
func mergeTasks(first Task, run []*item) (merged Task, name string) {
	defer func() {
		if r := recover(); r != nil {
			merged, name = nil, ""
		}
	}()
	acc, ok := first.(Mergeable)
	if !ok {
		return nil, ""
	}
	for _, p := range run {
		next, ok := acc.Merge(p.task).(Mergeable)
		if !ok || next == nil {
			return nil, ""
		}
		acc = next
	}
	return acc, acc.Name()
}

// run executes one attempt that started at start, settles the outcome
// (success, retry later, failed list, or cancelled) and returns the time
// the queue may use as "now" for its next task. It returns with q.mu held,
// and true, when the outcome needs nothing done outside the lock.
func (s *Service) run(workerCtx context.Context, q *queue, it *item, start time.Time) (time.Time, bool) {
	ctx := workerCtx
	if it.scope != nil {
		// The attempt ends with the scope or with a hard stop.
		c, cancel := context.WithCancelCause(it.scope)
		stopAfter := context.AfterFunc(workerCtx, func() { cancel(context.Cause(workerCtx)) })
		defer func() { stopAfter(); cancel(nil) }()
		ctx = c
	}
	err := execute(ctx, it)
	end := s.now()
	hardCause := context.Cause(workerCtx) // set when Remove or Stop cancelled the attempt
	q.metrics.ObserveRun(end.Sub(start))
	var errText string
	if err != nil {
		q.metrics.IncFailures()
		errText = err.Error() // the task's code: not under the lock
	}

	ev := Event{Queue: q.name, Task: it.name, Attempts: it.attempts}
	var onDone func()
	q.mu.Lock()
	q.running = nil
	switch {
	case it.cancelled():
		ev.Kind, ev.Err = Cancelled, context.Cause(it.scope)
	case err == nil:
		ev.Kind = Succeeded
		onDone = it.onDone
	case hardCause != nil:
		ev.Kind, ev.Err = Cancelled, fmt.Errorf("%w; last error: %w", hardCause, err)
	case IsTerminal(err) || it.attempts >= it.maxAttempts:
		ev.Kind, ev.Err = Failed, err
		q.failed = append(q.failed, failedTask{name: it.name, enqueuedAt: it.enqueuedAt, failedAt: end, attempts: it.attempts, err: errText})
		if over := len(q.failed) - s.opts.FailedLimit; over > 0 {
			q.failed = append(q.failed[:0:0], q.failed[over:]...)
		}
	case q.closing:
		ev.Kind, ev.Err = Cancelled, fmt.Errorf("%w; last error: %w", q.closeCause, err)
	default:
		it.lastErr = errText
		it.nextRetry = end.Add(s.opts.backoff(it.attempts))
		q.pending.pushFront(it)
		q.length.Store(int64(q.pending.len()))
		q.mu.Unlock()
		q.reportLength()
		return end, false
	}
	q.release(it)
	report := ev.Kind != Succeeded || s.opts.SucceededEvents
	if onDone == nil && !report {
		return end, true
	}
	q.mu.Unlock()
	if onDone != nil {
		onDone()
		end = time.Time{} // OnDone took an unknown time
	}
	if report {
		s.events.Put(ev)
	}
	return end, false
}

// execute runs one attempt, turning a panic into a terminal error so that
// one broken task cannot take the process down.
func execute(ctx context.Context, it *item) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Terminal(fmt.Errorf("task %q panicked: %v", it.name, r))
		}
	}()
	return it.task.Execute(ctx)
}
