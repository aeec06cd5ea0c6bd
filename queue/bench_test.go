package queue_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/queue/prommetrics"
)

// Each benchmark runs the Service and what a reader would write instead —
// goroutines draining buffered channels — side by side in the same run,
// in alternating rounds so both see the same machine load, and reports
// both and their ratio. See docs/benchmarks.md.

// countTask counts its runs and signals when a round is complete.
type countTask struct{ r *round }

func (t countTask) Name() string { return "noop" }
func (t countTask) Execute(context.Context) error {
	t.r.ran()
	return nil
}

type round struct {
	left atomic.Int64
	done chan struct{}
}

func newRound(n int) *round {
	r := &round{done: make(chan struct{})}
	r.left.Store(int64(n))
	return r
}

func (r *round) ran() {
	if r.left.Add(-1) == 0 {
		close(r.done)
	}
}

const roundSize = 1000

func BenchmarkThroughput(b *testing.B) {
	for _, bc := range []struct {
		queues     int
		prometheus bool
	}{{1, false}, {100, false}, {1, true}, {100, true}} {
		metrics := "none"
		if bc.prometheus {
			metrics = "prometheus"
		}
		queues := bc.queues
		b.Run(fmt.Sprintf("queues=%d/metrics=%s", queues, metrics), func(b *testing.B) {
			opts := queue.Options{}
			if bc.prometheus {
				// The operator's provider, on a registry of its own.
				p, err := prommetrics.NewWithRegisterer(prometheus.NewRegistry())
				if err != nil {
					b.Fatal(err)
				}
				opts.Metrics = p
			}
			s := queue.NewService(opts)
			drained := make(chan struct{})
			go func() {
				for range s.Events() {
				}
				close(drained)
			}()
			names := make([]string, queues)
			for i := range names {
				names[i] = fmt.Sprintf("ns.pkg-%d", i)
			}

			chans := make([]chan countTask, queues)
			var wg sync.WaitGroup
			for i := range chans {
				chans[i] = make(chan countTask, 1024)
				wg.Go(func() {
					for t := range chans[i] {
						_ = t.Execute(context.Background())
					}
				})
			}

			var queueTime, chanTime, queueCPU, chanCPU time.Duration
			b.ResetTimer()
			for done := 0; done < b.N; done += roundSize {
				n := min(roundSize, b.N-done)

				r := newRound(n)
				start, cpu := time.Now(), processCPU()
				for i := range n {
					if err := s.Enqueue(names[i%queues], countTask{r}); err != nil {
						b.Fatal(err)
					}
				}
				<-r.done
				queueTime += time.Since(start)
				queueCPU += processCPU() - cpu

				r = newRound(n)
				start, cpu = time.Now(), processCPU()
				for i := range n {
					chans[i%queues] <- countTask{r}
				}
				<-r.done
				chanTime += time.Since(start)
				chanCPU += processCPU() - cpu
			}
			b.StopTimer()
			for _, c := range chans {
				close(c)
			}
			wg.Wait()
			if err := s.Stop(context.Background()); err != nil {
				b.Fatal(err)
			}
			<-drained

			qns := float64(queueTime.Nanoseconds()) / float64(b.N)
			cns := float64(chanTime.Nanoseconds()) / float64(b.N)
			b.ReportMetric(qns, "queue-ns/task")
			b.ReportMetric(cns, "chan-ns/task")
			// Throughput of the Service as a fraction of the channel's.
			b.ReportMetric(cns/qns, "throughput-ratio")
			// CPU time the process spent per task in each side's rounds:
			// what each costs, less sensitive than wall time to other
			// load on the machine (zero where it cannot be read).
			if queueCPU > 0 {
				qcpu := float64(queueCPU.Nanoseconds()) / float64(b.N)
				ccpu := float64(chanCPU.Nanoseconds()) / float64(b.N)
				b.ReportMetric(qcpu, "queue-cpu-ns/task")
				b.ReportMetric(ccpu, "chan-cpu-ns/task")
				b.ReportMetric(ccpu/qcpu, "cpu-ratio")
			}
		})
	}
}

// latencyTask reports when it started.
type latencyTask struct{ started chan time.Time }

func (t latencyTask) Name() string { return "probe" }
func (t latencyTask) Execute(context.Context) error {
	t.started <- time.Now()
	return nil
}

func BenchmarkEnqueueToStart(b *testing.B) {
	// The Succeeded event tells the loop the queue is idle again.
	s := queue.NewService(queue.Options{SucceededEvents: true})
	started := make(chan time.Time, 1)
	probe := latencyTask{started: started}

	ch := make(chan latencyTask, 1024)
	chStarted := make(chan time.Time, 1)
	go func() {
		for t := range ch {
			_ = t.Execute(context.Background())
		}
	}()
	chProbe := latencyTask{started: chStarted}

	queueLat := make([]time.Duration, 0, b.N)
	chanLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := s.Enqueue("ns.idle", probe); err != nil {
			b.Fatal(err)
		}
		queueLat = append(queueLat, (<-started).Sub(t0))
		<-s.Events() // the queue is idle again once its event is out

		t0 = time.Now()
		ch <- chProbe
		chanLat = append(chanLat, (<-chStarted).Sub(t0))
	}
	b.StopTimer()
	close(ch)
	go func() {
		for range s.Events() {
		}
	}()
	if err := s.Stop(context.Background()); err != nil {
		b.Fatal(err)
	}

	q50, q99 := percentiles(queueLat)
	c50, c99 := percentiles(chanLat)
	b.ReportMetric(float64(q50.Nanoseconds()), "queue-p50-ns")
	b.ReportMetric(float64(q99.Nanoseconds()), "queue-p99-ns")
	b.ReportMetric(float64(c50.Nanoseconds()), "chan-p50-ns")
	b.ReportMetric(float64(c99.Nanoseconds()), "chan-p99-ns")
	b.ReportMetric(float64(q99)/float64(max(c99, 1)), "p99-ratio")
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)*50/100], d[min(len(d)*99/100, len(d)-1)]
}

// BenchmarkClockRead is context for the numbers above: outside bursts the
// Service reads the monotonic clock twice per task (see burstClock), and
// on virtual machines such a read costs as much as a channel hand-off.
func BenchmarkClockRead(b *testing.B) {
	epoch := time.Now()
	var d time.Duration
	for range b.N {
		d += time.Since(epoch)
	}
	if d < 0 {
		b.Fatal("clock went backwards")
	}
}
