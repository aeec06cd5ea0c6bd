package queue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// countingClock is the exact clock a burstClock reads, counting reads.
type countingClock struct {
	epoch time.Time
	reads atomic.Int64
}

func (c *countingClock) read() time.Duration {
	c.reads.Add(1)
	return time.Since(c.epoch)
}

func TestBurstClock(t *testing.T) {
	for _, tc := range []struct {
		name string
		tick time.Duration
		// reads made back to back before checking
		reads int
		// whether the clock caches afterwards
		wantHot bool
	}{
		{name: "few reads stay exact", tick: time.Hour, reads: burstReads - 1, wantHot: false},
		{name: "a burst caches", tick: time.Hour, reads: burstReads, wantHot: true},
		{name: "tick zero never caches", tick: 0, reads: 10 * burstReads, wantHot: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := &countingClock{epoch: time.Now()}
			c := newBurstClock(cc.read, tc.tick)
			defer c.stop()
			var prev time.Duration
			for range tc.reads {
				now := c.since()
				if now < prev {
					t.Fatalf("time went backwards: %v after %v", now, prev)
				}
				prev = now
			}
			if got := cc.reads.Load(); got != int64(tc.reads) {
				t.Fatalf("%d since calls read the clock %d times, want every time before a burst", tc.reads, got)
			}
			if c.hot.Load() != tc.wantHot {
				t.Fatalf("caching = %v, want %v", c.hot.Load(), tc.wantHot)
			}
			before := cc.reads.Load()
			got := c.since()
			exact := time.Since(cc.epoch)
			if tc.wantHot {
				if cc.reads.Load() != before {
					t.Fatal("a read during a burst read the clock")
				}
				if got > exact {
					t.Fatalf("cached time %v is ahead of the clock %v", got, exact)
				}
			} else if cc.reads.Load() != before+1 {
				t.Fatal("a read outside a burst did not read the clock")
			}
		})
	}
}

func TestBurstClockRefreshesAndCools(t *testing.T) {
	cc := &countingClock{epoch: time.Now()}
	c := newBurstClock(cc.read, time.Millisecond)
	defer c.stop()
	// A burst: every read within one tick. Retry in case the scheduler
	// stretched this loop past a tick.
	eventually.True(t, 10*time.Second, "burst detected", func() bool {
		for range burstReads {
			c.since()
		}
		return c.hot.Load()
	})
	first := c.since()
	// The goroutine moves the cached time on while it is used.
	eventually.True(t, 10*time.Second, "cached time refreshed", func() bool { return c.since() > first })
	// Unused, the cache is dropped and reads are exact again.
	eventually.True(t, 10*time.Second, "burst over", func() bool { return !c.hot.Load() })
	before := cc.reads.Load()
	now := c.since()
	if cc.reads.Load() != before+1 {
		t.Fatal("a read after the burst did not read the clock")
	}
	if now < first {
		t.Fatalf("time went backwards: %v after %v", now, first)
	}
	// exact always reads the clock.
	if c.exact(); cc.reads.Load() != before+2 {
		t.Fatal("exact did not read the clock")
	}
}

func TestBurstClockStop(t *testing.T) {
	cc := &countingClock{epoch: time.Now()}
	c := newBurstClock(cc.read, time.Millisecond)
	eventually.True(t, 10*time.Second, "burst detected", func() bool {
		for range burstReads {
			c.since()
		}
		return c.hot.Load()
	})
	c.stop()
	select {
	case <-c.done:
	default:
		t.Fatal("stop returned before the refreshing goroutine")
	}
	c.stop() // twice is safe
	// After stop no burst starts a goroutine again: reads stay exact.
	before := cc.reads.Load()
	for range 4 * burstReads {
		c.since()
	}
	if got := cc.reads.Load() - before; got != 4*burstReads {
		t.Fatalf("after stop %d reads read the clock %d times, want every time", 4*burstReads, got)
	}
}

// TestServiceTimesDuringBurst checks what a burst costs the task times
// users see: a task that runs for a while is measured at least as long as
// it ran even while the Service serves cached times, and Stop stops the
// clock's goroutine.
func TestServiceTimesDuringBurst(t *testing.T) {
	m := &recordingMetrics{}
	s := NewService(Options{Metrics: m})
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	go func() {
		for range s.Events() {
		}
	}()
	// Plenty of no-op tasks make a burst.
	for range 20 * burstReads {
		if err := s.Enqueue("ns.burst", task("noop", nil)); err != nil {
			t.Fatal(err)
		}
	}
	const sleep = 20 * time.Millisecond
	ran := make(chan struct{})
	if err := s.Enqueue("ns.burst", task("slow", func(context.Context) error {
		time.Sleep(sleep)
		close(ran)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	<-ran
	eventually.True(t, 10*time.Second, "run of the slow task observed", func() bool { return m.maxRun() > 0 && m.runs() == 20*burstReads+1 })
	if got := m.maxRun(); got < sleep {
		t.Fatalf("slow task's run observed as %v, want at least the %v it slept", got, sleep)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := s.clock
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if started {
		select {
		case <-c.done:
		default:
			t.Fatal("Stop returned before the clock's goroutine")
		}
	}
}

// recordingMetrics keeps the run times the Service observes.
type recordingMetrics struct {
	mu  sync.Mutex
	run []time.Duration
}

func (m *recordingMetrics) ForQueue(string, func() int) QueueMetrics { return m }
func (m *recordingMetrics) Forget(string)                            {}
func (m *recordingMetrics) ObserveWait(time.Duration)                {}
func (m *recordingMetrics) IncFailures()                             {}
func (m *recordingMetrics) Flush()                                   {}
func (m *recordingMetrics) ObserveRun(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.run = append(m.run, d)
}

func (m *recordingMetrics) runs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.run)
}

func (m *recordingMetrics) maxRun() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var longest time.Duration
	for _, d := range m.run {
		if d < 0 {
			return d // a negative run is a bug: surface it
		}
		longest = max(longest, d)
	}
	return longest
}
