package output

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// benchEvents are trace_exec-like events of about 250 bytes, as the
// controller hands them to a sink.
var benchEvents = func() [][]byte {
	evs := make([][]byte, 256)
	for i := range evs {
		evs[i] = fmt.Appendf(nil, `{"timestamp":"2026-12-06T07:28:%02d.%09dZ","k8s":{"node":"node-1","namespace":"default","podName":"web-%d","containerName":"app"},"proc":{"pid":%d,"ppid":1,"comm":"sh","uid":0},"args":["/bin/sh","-c","echo %d"],"retval":0}`,
			i%60, i*7919, i%7, 1000+i, i)
	}
	return evs
}()

// benchRound is what one side of the comparison does with n events.
type benchRound func(b *testing.B, round, n int)

// refResetBytes is when the reference empties its buffer: like the sinks'
// bounded buffers it stays in cache, so it is the cheapest sink there is.
const refResetBytes = 64 << 10

// compareWithBuffer runs the sink side and the reference side (the same
// events written to a bytes.Buffer with a newline, emptied every 64 KiB)
// alternately, in rounds of roundSize events, b.N events each in all. It
// reports the median over rounds of each side's events per second and of
// their ratio (robust to a round slowed by load from elsewhere), and
// allocations per event of each side. Alternating in one run lets load
// from elsewhere hit both sides alike.
//
// between, when not nil, runs after every round, outside the measurements.
func compareWithBuffer(b *testing.B, roundSize int, between func(), sink benchRound) {
	var ref bytes.Buffer
	reference := func(b *testing.B, round, n int) {
		for i := range n {
			if ref.Len() > refResetBytes {
				ref.Reset()
			}
			ref.Write(benchEvents[i%len(benchEvents)])
			ref.WriteByte('\n')
		}
	}
	var ms runtime.MemStats
	measure := func(side benchRound, round, n int) (float64, uint64) {
		runtime.ReadMemStats(&ms)
		mallocs := ms.Mallocs
		b.StartTimer()
		start := time.Now()
		side(b, round, n)
		d := time.Since(start)
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		return float64(n) / d.Seconds(), ms.Mallocs - mallocs
	}

	var sinkRates, refRates, ratios []float64
	var sinkAllocs, refAllocs uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for round, done := 0, 0; done < b.N; round, done = round+1, done+roundSize {
		n := min(roundSize, b.N-done)
		sr, sa := measure(sink, round, n)
		rr, ra := measure(reference, round, n)
		sinkRates, refRates, ratios = append(sinkRates, sr), append(refRates, rr), append(ratios, sr/rr)
		sinkAllocs, refAllocs = sinkAllocs+sa, refAllocs+ra
		if between != nil {
			between()
		}
	}
	b.ReportMetric(median(sinkRates), "sink-events/s")
	b.ReportMetric(median(refRates), "buffer-events/s")
	b.ReportMetric(median(ratios), "rate-ratio")
	b.ReportMetric(float64(sinkAllocs)/float64(b.N), "sink-allocs/event")
	b.ReportMetric(float64(refAllocs)/float64(b.N), "buffer-allocs/event")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkStatusVsBuffer: Write of every event into a Status sink at the
// default 64 KiB limit, plus one Result per round (the controller
// publishes progress periodically), beside the bytes.Buffer reference.
func BenchmarkStatusVsBuffer(b *testing.B) {
	for _, perResult := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("result-every=%d", perResult), func(b *testing.B) {
			s := NewStatus(StatusOptions{})
			compareWithBuffer(b, perResult, nil, func(b *testing.B, round, n int) {
				for i := range n {
					if err := s.Write(benchEvents[i%len(benchEvents)]); err != nil {
						b.Fatal(err)
					}
				}
				if out, _, _ := s.Result(); len(out) > DefaultStatusLimit {
					b.Fatalf("output of %d bytes", len(out))
				}
			})
		})
	}
}

// BenchmarkConfigMapVsBuffer: one ConfigMap sink per run of perRun events
// at the default 900 KiB limit: every Write plus the Close that creates
// the ConfigMap in the API server, beside the bytes.Buffer reference.
// Pruning (keep 5) runs between rounds, outside the measurements.
func BenchmarkConfigMapVsBuffer(b *testing.B) {
	ctx := context.Background()
	for _, perRun := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("events-per-run=%d", perRun), func(b *testing.B) {
			tr := &gadgetv1alpha1.Trace{}
			tr.Namespace, tr.Name = env.Namespace(b), "bench"
			tr.Spec = gadgetv1alpha1.TraceSpec{Node: "node-1", Gadget: "trace-exec", OutputMode: gadgetv1alpha1.OutputExternalResource}
			if err := env.Client.Create(ctx, tr); err != nil {
				b.Fatal(err)
			}
			var closeMs []float64
			prune := func() {
				if err := PruneConfigMaps(ctx, env.Client, tr, 5); err != nil {
					b.Fatal(err)
				}
			}
			compareWithBuffer(b, perRun, prune, func(b *testing.B, round, n int) {
				s, err := NewConfigMap(ConfigMapOptions{Client: env.Client, Scheme: env.Scheme, Trace: tr, RunID: fmt.Sprintf("run-%d", round)})
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					if err := s.Write(benchEvents[i%len(benchEvents)]); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				if _, err := s.Close(ctx); err != nil {
					b.Fatal(err)
				}
				closeMs = append(closeMs, float64(time.Since(start).Microseconds())/1000)
			})
			b.ReportMetric(median(closeMs), "close-ms")
		})
	}
}

// BenchmarkFileVsBuffer: one File sink per round of 10000 events (rotating
// at the default 10 MiB), every Write plus Close, beside the bytes.Buffer
// reference.
func BenchmarkFileVsBuffer(b *testing.B) {
	dir := b.TempDir()
	compareWithBuffer(b, 10000, nil, func(b *testing.B, round, n int) {
		f, err := NewFile(FileOptions{Dir: dir, Namespace: "gadget", Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if err := f.Write(benchEvents[i%len(benchEvents)]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := f.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	})
}
