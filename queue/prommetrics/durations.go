package prommetrics

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// durations is a histogram of task durations per queue: what a
// prometheus.HistogramVec would collect, observed more cheaply. Each
// QueueMetrics gets a series of its own, written only by its queue's
// worker (see queue.QueueMetrics), so an observation is a search over
// integer bucket bounds and two additions, published in batches (see
// durationSeries); a scrape sums the series of each queue name.
// prometheus.Histogram converts to float seconds, adds the float sum in a
// compare-and-swap loop and keeps hot and cold counts so that a scrape
// sees sum and count of the same observations — several times the cost,
// paid twice per task. Here a scrape may see the sum of a batch whose
// counts it does not see yet, an error rate() and histogram_quantile() do
// not notice.
type durations struct {
	desc   *prometheus.Desc
	bounds []time.Duration // bucket upper bounds, ascending
	upper  []float64       // the same in seconds, for the exposition

	mu     sync.Mutex
	series map[string][]*durationSeries
}

// publishEvery is how many observations a series holds back at most
// before it publishes them.
const publishEvery = 64

// durationSeries is one queue's histogram, written by one goroutine at a
// time. The writer counts into plain fields and publishes them to the
// atomics a scrape reads every publishEvery observations and on flush:
// an atomic store is a locked instruction on amd64, as costly as the rest
// of an observation, and a scrape every few seconds does not need every
// one of a burst as it happens.
type durationSeries struct {
	bounds []time.Duration // the histogram's, shared and read-only
	counts []atomic.Uint64 // published, per bucket, not cumulative; the last is +Inf
	sum    atomic.Int64    // published, nanoseconds

	// Owned by the writer: observations not published yet.
	held      []uint64
	heldSum   int64
	heldCount int
}

// observe records one duration; a negative one counts as zero.
func (s *durationSeries) observe(v time.Duration) {
	v = max(v, 0)
	i := 0
	for i < len(s.bounds) && v > s.bounds[i] {
		i++
	}
	s.held[i]++
	s.heldSum += int64(v)
	if s.heldCount++; s.heldCount >= publishEvery {
		s.flush()
	}
}

// flush publishes the held observations. Only the writer calls it, so
// loads and stores need no read-modify-write.
func (s *durationSeries) flush() {
	if s.heldCount == 0 {
		return
	}
	for i, n := range s.held {
		if n != 0 {
			s.counts[i].Store(s.counts[i].Load() + n)
			s.held[i] = 0
		}
	}
	if s.heldSum != 0 {
		s.sum.Store(s.sum.Load() + s.heldSum)
		s.heldSum = 0
	}
	s.heldCount = 0
}

var _ prometheus.Collector = (*durations)(nil)

func newDurations(name, help string, upper []float64) *durations {
	d := &durations{
		desc:   prometheus.NewDesc(name, help, []string{"queue"}, nil),
		upper:  upper,
		series: make(map[string][]*durationSeries),
	}
	for _, s := range upper {
		d.bounds = append(d.bounds, time.Duration(math.Round(s*float64(time.Second))))
	}
	return d
}

// forQueue returns a new series for the queue.
func (d *durations) forQueue(queue string) *durationSeries {
	s := &durationSeries{
		bounds: d.bounds,
		counts: make([]atomic.Uint64, len(d.bounds)+1),
		held:   make([]uint64, len(d.bounds)+1),
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.series[queue] = append(d.series[queue], s)
	return s
}

func (d *durations) forget(queue string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.series, queue)
}

func (d *durations) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *durations) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for queue, all := range d.series {
		counts := make([]uint64, len(d.bounds)+1)
		var sum time.Duration
		for _, s := range all {
			for i := range counts {
				counts[i] += s.counts[i].Load()
			}
			sum += time.Duration(s.sum.Load())
		}
		buckets := make(map[float64]uint64, len(d.upper))
		var count uint64
		for i, upper := range d.upper {
			count += counts[i]
			buckets[upper] = count
		}
		count += counts[len(d.upper)]
		m, err := prometheus.NewConstHistogram(d.desc, count, sum.Seconds(), buckets, queue)
		if err != nil {
			m = prometheus.NewInvalidMetric(d.desc, err)
		}
		ch <- m
	}
}

// lengths is the queue length gauge, read from the Service when scraped
// rather than set on every Enqueue and start.
type lengths struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	funcs map[string]func() int
}

var _ prometheus.Collector = (*lengths)(nil)

func newLengths(name, help string) *lengths {
	return &lengths{
		desc:  prometheus.NewDesc(name, help, []string{"queue"}, nil),
		funcs: make(map[string]func() int),
	}
}

func (l *lengths) set(queue string, length func() int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.funcs[queue] = length
}

func (l *lengths) forget(queue string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.funcs, queue)
}

func (l *lengths) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *lengths) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	funcs := make(map[string]func() int, len(l.funcs))
	for q, f := range l.funcs {
		funcs[q] = f
	}
	l.mu.Unlock()
	// The funcs are the Service's code: called without the lock.
	for q, f := range funcs {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, float64(f()), q)
	}
}
