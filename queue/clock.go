package queue

import (
	"sync"
	"sync/atomic"
	"time"
)

// Burst clock defaults: a burst is more than burstReads clock reads within
// one tick; the cached time is refreshed every tick and dropped after
// coolTicks ticks in which nobody used it.
const (
	defaultTick = time.Millisecond
	burstReads  = 32
	coolTicks   = 8
)

// burstClock tells the Service's task times (enqueue, start, end) as
// durations since the Service's epoch.
//
// A monotonic clock read costs 30–50 ns on virtual machines with
// kvm-clock: as much as a whole channel hand-off, and the Service needs
// two per task. So while tasks come and go in a burst (more than
// burstReads reads within one tick) reads return a cached time that a
// goroutine refreshes every tick, the way servers cache "now" for their
// access logs; the goroutine stops again once the cache has gone unused
// for coolTicks ticks. Outside bursts — the operator's usual load of a
// few to hundreds of tasks a second — every read is exact and no
// goroutine runs. A cached time is never ahead of the clock and lags it
// by a tick plus however long the Go scheduler delays the refreshing
// goroutine.
//
// A burstClock with tick zero always reads the clock (used with an
// injected clock, whose time tests set by hand).
type burstClock struct {
	read func() time.Duration // the exact clock
	tick time.Duration

	hot  atomic.Bool  // cached is valid and refreshed
	used atomic.Bool  // cached was read since the last refresh
	now  atomic.Int64 // the cached time

	// The current burst-detection window: its start and the exact reads
	// in it. Updated without a lock; a lost update only delays a burst's
	// detection by a read or two.
	windowStart atomic.Int64
	windowReads atomic.Int32

	wake chan struct{} // capacity 1: a burst started

	mu      sync.Mutex // guards started and stopped, not the hot path
	started bool
	stopped bool
	quit    chan struct{}
	done    chan struct{}
}

func newBurstClock(read func() time.Duration, tick time.Duration) *burstClock {
	return &burstClock{
		read: read,
		tick: tick,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// since returns the time since the epoch: the cached time during a burst,
// the clock's otherwise.
func (c *burstClock) since() time.Duration {
	if c.hot.Load() {
		if !c.used.Load() {
			c.used.Store(true)
		}
		return time.Duration(c.now.Load())
	}
	t := c.read()
	if c.tick > 0 {
		c.count(t)
	}
	return t
}

// exact returns the clock's time, refreshing the cache with it during a
// burst (see end).
func (c *burstClock) exact() time.Duration {
	t := c.read()
	if c.hot.Load() {
		c.now.Store(int64(t))
	}
	return t
}

// end returns when an attempt that started at start ended: never before
// start, and an exact read when the cached time says the attempt took a
// tick or more, so that long runs are measured exactly and short ones are
// off by at most the cache's lag.
func (c *burstClock) end(start time.Duration) time.Duration {
	t := max(c.since(), start)
	if c.tick > 0 && t-start >= c.tick {
		t = max(c.exact(), start)
	}
	return t
}

// count adds an exact read at t to the current window and starts a burst
// when the window has seen too many.
func (c *burstClock) count(t time.Duration) {
	if start := time.Duration(c.windowStart.Load()); t-start >= c.tick || t < start {
		c.windowStart.Store(int64(t))
		c.windowReads.Store(1)
		return
	}
	if c.windowReads.Add(1) < burstReads {
		return
	}
	c.windowReads.Store(0)
	c.now.Store(int64(t))
	c.used.Store(true)
	if !c.hot.CompareAndSwap(false, true) {
		return
	}
	c.mu.Lock()
	if c.stopped {
		c.hot.Store(false)
		c.mu.Unlock()
		return
	}
	if !c.started {
		c.started = true
		go c.refresh()
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// refresh is the cache's goroutine: it refreshes the cached time every
// tick while a burst lasts and sleeps between bursts. stop ends it.
func (c *burstClock) refresh() {
	defer close(c.done)
	ticker := time.NewTicker(c.tick)
	defer ticker.Stop()
	for {
		select {
		case <-c.wake:
		case <-c.quit:
			return
		}
		ticker.Reset(c.tick)
		unused := 0
		for c.hot.Load() {
			select {
			case <-ticker.C:
			case <-c.quit:
				return
			}
			c.now.Store(int64(c.read()))
			if c.used.Swap(false) {
				unused = 0
				continue
			}
			if unused++; unused >= coolTicks {
				c.hot.Store(false)
			}
		}
		ticker.Stop()
	}
}

// stop ends a burst, stops the refreshing goroutine if one was started and
// waits for it. Later reads are exact. Safe to call more than once.
func (c *burstClock) stop() {
	c.mu.Lock()
	started := c.started
	if !c.stopped {
		c.stopped = true
		close(c.quit)
	}
	c.hot.Store(false)
	c.mu.Unlock()
	if started {
		<-c.done
	}
}
