package queue

import (
	"context"
	"math/rand/v2"
	"time"

	"k8s.io/utils/clock"
)

// Defaults applied by NewService to zero Options fields.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = 60 * time.Second
	DefaultMaxAttempts = 10
	DefaultJitter      = 0.2
	DefaultFailedLimit = 20
	DefaultEventBuffer = 1024
	DefaultEventStall  = time.Second
)

// Options configure a Service. The zero value means every default.
type Options struct {
	// Clock tells time and makes backoff timers. Default: the real clock,
	// whose time the Service caches during bursts of short tasks (see
	// docs/queues.md); any other clock is read for every task time.
	Clock clock.Clock
	// BackoffBase is the delay before the first retry; each further retry
	// doubles it. Default 1s.
	BackoffBase time.Duration
	// BackoffCap caps the delay between retries. Default 60s; a cap below
	// BackoffBase is raised to BackoffBase.
	BackoffCap time.Duration
	// Jitter is the largest fraction of a retry delay removed at random,
	// so that queues failing together do not retry together; it never
	// lengthens a delay past BackoffCap. Default 0.2; must be below 1, and
	// a negative value disables jitter.
	Jitter float64
	// MaxAttempts is how many times a task runs before it goes to the
	// failed list, unless Enqueue says otherwise. Default 10.
	MaxAttempts int
	// FailedLimit is how many failed tasks each queue keeps for its dump;
	// older ones are forgotten. Default 20.
	FailedLimit int
	// EventBuffer is the buffer of the Events channel. Events beyond it
	// wait in memory until read. Default 1024.
	EventBuffer int
	// EventStall bounds how long Stop waits for the Events reader: once
	// the reader has taken no event for this long, the events not yet
	// delivered are dropped and Stop goes on, so an owner that stopped
	// reading cannot make Stop hang. Default 1s.
	EventStall time.Duration
	// Metrics receives queue metrics. Default: none are recorded.
	Metrics MetricsProvider
	// SucceededEvents sends a Succeeded event for every task that
	// succeeds. Default false: only Failed and Cancelled tasks are
	// reported, which is what an owner acts on, and a success costs no
	// event delivery (OnDone tells a caller that its own task succeeded).
	SucceededEvents bool

	// random returns a number in [0, 1) for jitter; tests pin it.
	random func() float64
}

func (o *Options) setDefaults() {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffCap <= 0 {
		o.BackoffCap = DefaultBackoffCap
	}
	if o.BackoffCap < o.BackoffBase {
		o.BackoffCap = o.BackoffBase
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = DefaultJitter
	case o.Jitter < 0:
		o.Jitter = 0
	case o.Jitter >= 1:
		o.Jitter = 0.99
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.FailedLimit <= 0 {
		o.FailedLimit = DefaultFailedLimit
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = DefaultEventBuffer
	}
	if o.EventStall <= 0 {
		o.EventStall = DefaultEventStall
	}
	if o.Metrics == nil {
		o.Metrics = noopMetrics{}
	}
	if o.random == nil {
		o.random = rand.Float64
	}
}

// backoff is the delay after the given number of failed attempts (1 for
// the first failure): BackoffBase doubled per further failure, capped,
// then shortened by up to Jitter at random.
func (o *Options) backoff(failures int) time.Duration {
	d := o.BackoffBase
	for i := 1; i < failures && d < o.BackoffCap; i++ {
		d *= 2
	}
	if d > o.BackoffCap {
		d = o.BackoffCap
	}
	return d - time.Duration(float64(d)*o.Jitter*o.random())
}

// EnqueueOption changes how one task is queued.
type EnqueueOption func(*enqueueOptions)

type enqueueOptions struct {
	unique         bool
	onDone         func()
	maxAttempts    int // used when maxAttemptsSet
	maxAttemptsSet bool
	scope          context.Context
	owner          Owner
}

// Unique skips the task when a task of the same Name is already pending
// (waiting to start or to be retried; a running task does not count). The
// skipped task's OnDone, if any, is then called when the pending task
// succeeds.
func Unique() EnqueueOption { return func(o *enqueueOptions) { o.unique = true } }

// OnDone calls f after the task succeeds, on the queue's worker, with no
// lock held and before the queue's next task starts, so f must be quick.
// It is not called for a task that fails or is cancelled.
func OnDone(f func()) EnqueueOption {
	return func(o *enqueueOptions) {
		if f == nil {
			return
		}
		prev := o.onDone
		if prev == nil {
			o.onDone = f
			return
		}
		o.onDone = func() { prev(); f() }
	}
}

// MaxAttempts sets how many times the task runs before it goes to the
// failed list; n must be at least 1.
func MaxAttempts(n int) EnqueueOption {
	return func(o *enqueueOptions) { o.maxAttempts = n; o.maxAttemptsSet = true }
}

// OwnedBy records whose task this is; its Events carry o (Event.Owner).
func OwnedBy(o Owner) EnqueueOption {
	return func(eo *enqueueOptions) { eo.owner = o }
}

// Scope ties the task to ctx: once ctx is done the task is dropped, or its
// running attempt's context is cancelled, and it is reported Cancelled; its
// OnDone is not called, even if the attempt then returns nil. ctx's values
// are visible to Execute. A nil ctx means no scope.
func Scope(ctx context.Context) EnqueueOption {
	return func(o *enqueueOptions) { o.scope = ctx }
}
