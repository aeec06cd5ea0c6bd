package queue

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

// item is one queued task and its bookkeeping. Times are durations since
// the Service's epoch (see Service.since): cheaper to read and to store
// than time.Time, and turned into times only for a dump.
type item struct {
	task        Task
	name        string
	mergeKey    string
	onDone      func() // Unique adds to it, under the queue's mu
	scope       context.Context
	owner       Owner
	maxAttempts int
	enqueuedAt  time.Duration

	// Written by the worker under the queue's mu.
	attempts   int
	nextRetry  time.Duration // zero unless waiting for a retry
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
	enqueuedAt time.Duration
	failedAt   time.Duration
	attempts   int
	err        string
}

// queue is one named FIFO queue and the state its worker shares with
// Enqueue, Remove, Stop and Dump.
type queue struct {
	name    string
	metrics QueueMetrics
	wake    chan struct{} // capacity 1: a task was added while the worker idled, or close
	quit    chan struct{} // closed once by close
	done    chan struct{} // closed when the worker has returned
	prev    *queue        // a removed queue of the same name to wait for

	// What Enqueue reads and writes comes first, on the cache lines it
	// shares with the worker anyway; the worker's own state follows, so
	// that what the worker writes for every task does not pull Enqueue's
	// lines away.
	mu sync.Mutex
	// Guarded by mu. pending is FIFO and excludes the running task; a task
	// waiting for its retry is at its head. idle is set by the worker just
	// before it waits for wake. Once closing is set, pending stays empty
	// and no task starts.
	pending fifo
	idle    bool
	closing bool

	// Also guarded by mu. While running is set, cur is the running task
	// and runningSince its start; only the worker writes them, so the
	// worker reads cur without mu.
	running      bool
	cur          item
	runningSince time.Duration
	cancelWorker context.CancelCauseFunc // hard stop: cancels the running attempt
	failed       []failedTask
	closeCause   error
}

func newQueue(name string, m QueueMetrics, prev *queue, rings *ringPool) *queue {
	return &queue{
		name:    name,
		metrics: m,
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		prev:    prev,
		pending: fifo{pool: rings},
	}
}

// add appends a copy of *rec, or with unique folds it into an equal-named
// pending task. It reports false when the queue is closing.
func (q *queue) add(rec *item, unique bool) bool {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return false
	}
	if unique {
		for i := range q.pending.len() {
			if p := q.pending.at(i); p.name == rec.name && !p.cancelled() {
				p.onDone = chain(p.onDone, rec.onDone)
				q.mu.Unlock()
				return true
			}
		}
	}
	q.pending.push(rec)
	wake := q.idle
	if wake {
		q.idle = false
	}
	q.mu.Unlock()
	if wake {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
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
	q.mu.Unlock()
	select { // an idle worker waits for wake alone
	case q.wake <- struct{}{}:
	default:
	}

	events := make([]Event, 0, len(dropped))
	for _, it := range dropped {
		events = append(events, Event{Queue: q.name, Task: it.name, Kind: Cancelled, Err: cause, Attempts: it.attempts, Owner: it.owner})
	}
	return events
}

// cancelRunning cancels the running attempt, if any, and returns its
// task's name.
func (q *queue) cancelRunning(cause error) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.running || q.cancelWorker == nil {
		return ""
	}
	q.cancelWorker(cause)
	return q.cur.name
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

// unknownTime marks the worker's last end time as not known: the clock
// must be read.
const unknownTime = time.Duration(math.MinInt64)

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
	last := unknownTime
	locked := false
	for {
		start, ok := s.next(q, last, locked)
		if !ok {
			return
		}
		last, locked = s.run(workerCtx, q, start)
	}
}

// next waits for the head task to be due, moves it to q.cur and marks it
// running, returning its start time. It drops cancelled tasks on the way,
// compacts mergeable ones, and reports false once the queue is closing.
// last, unless unknownTime, is a recent time to use instead of reading the
// clock. locked says the caller holds q.mu already.
func (s *Service) next(q *queue, last time.Duration, locked bool) (time.Duration, bool) {
	yielded := false
	for {
		if !locked {
			q.mu.Lock()
		}
		locked = false
		if q.closing {
			q.cur = item{}
			q.mu.Unlock()
			q.metrics.Flush()
			return 0, false
		}
		if q.pending.len() == 0 {
			if !yielded {
				// Let a producer on this P enqueue before paying for a
				// park and a wake-up.
				q.mu.Unlock()
				runtime.Gosched()
				yielded = true
				last = unknownTime
				continue
			}
			yielded = false
			q.idle = true
			q.cur = item{}     // keep no reference to an ended task while idle
			q.pending.shrink() // an idle queue keeps a small ring only
			q.mu.Unlock()
			q.metrics.Flush()
			<-q.wake // close sends one too: a one-way receive parks cheaper than a select
			last = unknownTime
			continue
		}
		it := q.pending.front()
		if it.cancelled() {
			var dropped item
			q.pending.popInto(&dropped)
			q.mu.Unlock()
			s.events.Put(Event{Queue: q.name, Task: dropped.name, Kind: Cancelled, Err: context.Cause(dropped.scope), Attempts: dropped.attempts, Owner: dropped.owner})
			continue
		}
		now := last
		if now == unknownTime || it.enqueuedAt > now {
			now = s.since()
		}
		// A cached time (see burstClock) may lag the enqueue time a
		// concurrent exact read produced.
		now = max(now, it.enqueuedAt)
		if it.nextRetry > now {
			q.cur = item{}
			t := s.opts.Clock.NewTimer(it.nextRetry - now)
			done := it.scopeDone()
			q.mu.Unlock()
			q.metrics.Flush()
			select {
			case <-t.C():
			case <-q.quit:
			case <-done:
			}
			t.Stop()
			last = unknownTime
			continue
		}
		if it.attempts == 0 && it.mergeKey != "" && !it.mergeTried {
			it.mergeTried = true
			s.compact(q)
			last = unknownTime
			continue
		}

		q.pending.popInto(&q.cur)
		q.cur.attempts++
		q.running, q.runningSince = true, now
		first := q.cur.attempts == 1
		wait := now - q.cur.enqueuedAt
		q.mu.Unlock()
		if first {
			q.metrics.ObserveWait(wait)
		}
		return now, true
	}
}

// compact merges the pending tasks right behind the head that share its
// merge key (and its scope and attempt limit) into the head. It is called
// with q.mu held and returns with it released; the caller looks at the
// queue again.
func (s *Service) compact(q *queue) {
	head := q.pending.front()
	key, scope, maxAttempts := head.mergeKey, head.scope, head.maxAttempts
	first := head.task
	var run []Task
	for i := 1; i < q.pending.len(); i++ {
		p := q.pending.at(i)
		if p.mergeKey != key || p.scope != scope || p.maxAttempts != maxAttempts {
			break
		}
		run = append(run, p.task)
	}
	q.mu.Unlock()
	if len(run) == 0 {
		return
	}

	// Merge is the task's code: call it without the lock. Only this worker
	// removes pending tasks, so the head and the run behind it are still
	// in place afterwards unless the queue was closed.
	merged, name, n := mergeTasks(first, run)
	if merged == nil || n == 0 {
		return
	}
	run = run[:n]

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return
	}
	head = q.pending.front()
	onDone := head.onDone
	for i := 1; i <= len(run); i++ {
		onDone = chain(onDone, q.pending.at(i).onDone)
	}
	q.pending.replaceFront(&item{
		task:        merged,
		name:        name,
		mergeKey:    key,
		onDone:      onDone,
		scope:       scope,
		owner:       head.owner,
		maxAttempts: maxAttempts,
		enqueuedAt:  head.enqueuedAt,
		mergeTried:  true,
	}, len(run))
}

// mergeTasks folds the tasks of run into first until a Merge refuses one
// by returning its receiver; n is how many were folded. It returns nil
// when a Merge returns nil or panics, and then nothing is merged.
func mergeTasks(first Task, run []Task) (merged Task, name string, n int) {
	defer func() {
		if r := recover(); r != nil {
			merged, name, n = nil, "", 0
		}
	}()
	acc, ok := first.(Mergeable)
	if !ok {
		return nil, "", 0
	}
	for _, t := range run {
		next, ok := acc.Merge(t).(Mergeable)
		if !ok || next == nil {
			return nil, "", 0
		}
		if next == acc {
			break
		}
		acc = next
		n++
	}
	return acc, acc.Name(), n
}

// run executes one attempt of q.cur, which started at start, settles the
// outcome (success, retry later, failed list, or cancelled) and returns
// the time the queue may use as "now" for its next task. It returns with
// q.mu held, and true, when the outcome needs nothing done outside the
// lock.
func (s *Service) run(workerCtx context.Context, q *queue, start time.Duration) (time.Duration, bool) {
	it := &q.cur // only this worker writes it, under q.mu
	ctx := workerCtx
	if it.scope != nil {
		// The attempt ends with the scope or with a hard stop.
		c, cancel := context.WithCancelCause(it.scope)
		stopAfter := context.AfterFunc(workerCtx, func() { cancel(context.Cause(workerCtx)) })
		defer func() { stopAfter(); cancel(nil) }()
		ctx = c
	}
	err := execute(ctx, it)
	end := s.clock.end(start)
	q.metrics.ObserveRun(end - start)
	var (
		errText   string
		hardCause error // set when Remove or Stop cancelled the attempt
		terminal  bool
	)
	if err != nil {
		q.metrics.IncFailures()
		// The error's methods are the task's code: not under the lock.
		errText = err.Error()
		terminal = IsTerminal(err)
		hardCause = context.Cause(workerCtx)
	}

	var (
		kind   EventKind
		evErr  error
		onDone func()
	)
	q.mu.Lock()
	switch {
	case it.cancelled():
		kind, evErr = Cancelled, context.Cause(it.scope)
	case err == nil:
		kind = Succeeded
		onDone = it.onDone
	case hardCause != nil:
		kind, evErr = Cancelled, fmt.Errorf("%w; last error: %w", hardCause, err)
	case terminal || it.attempts >= it.maxAttempts:
		kind, evErr = Failed, err
		q.failed = append(q.failed, failedTask{name: it.name, enqueuedAt: it.enqueuedAt, failedAt: end, attempts: it.attempts, err: errText})
		if over := len(q.failed) - s.opts.FailedLimit; over > 0 {
			q.failed = append(q.failed[:0:0], q.failed[over:]...)
		}
	case q.closing:
		kind, evErr = Cancelled, fmt.Errorf("%w; last error: %w", q.closeCause, err)
	default:
		it.lastErr = errText
		it.nextRetry = end + s.opts.backoff(it.attempts)
		q.pending.pushFront(it)
		q.running, q.cur = false, item{}
		q.mu.Unlock()
		return end, false
	}
	q.running = false
	report := kind != Succeeded || s.opts.SucceededEvents
	if onDone == nil && !report {
		// next overwrites q.cur with the next task, or clears it before
		// the worker waits: no reference to an ended task is kept.
		return end, true
	}
	ev := Event{Queue: q.name, Task: it.name, Kind: kind, Err: evErr, Attempts: it.attempts, Owner: it.owner}
	q.cur = item{}
	q.mu.Unlock()
	// What a caller learns from OnDone or the event, the metrics show.
	q.metrics.Flush()
	if onDone != nil {
		onDone()
		end = unknownTime // OnDone took an unknown time
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
