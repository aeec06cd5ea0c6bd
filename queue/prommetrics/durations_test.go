package prommetrics

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestDurationsMatchPrometheusHistogram feeds the same durations to a
// prometheus.Histogram and to durations: what a scrape shows must not
// depend on which one recorded them.
func TestDurationsMatchPrometheusHistogram(t *testing.T) {
	upper := []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300}
	for _, tc := range []struct {
		name   string
		values []time.Duration
	}{
		{name: "none"},
		{name: "zero", values: []time.Duration{0}},
		{name: "on every bound", values: func() (v []time.Duration) {
			for _, u := range upper {
				v = append(v, time.Duration(math.Round(u*1e9)))
			}
			return v
		}()},
		{name: "just past bounds", values: []time.Duration{time.Millisecond + 1, 5*time.Millisecond + 1, time.Second + 1}},
		{name: "beyond the last bound", values: []time.Duration{301 * time.Second, 24 * time.Hour}},
		{name: "mixed", values: []time.Duration{3 * time.Microsecond, 7 * time.Millisecond, 42 * time.Millisecond, 2 * time.Second, 3 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ref", Help: "ref", Buckets: upper})
			d := newDurations("d", "d", upper)
			s := d.forQueue("ns.a")
			for _, v := range tc.values {
				ref.Observe(v.Seconds())
				s.observe(v)
			}
			s.flush()
			want := histogramOf(t, ref)
			got := histogramOf(t, d)
			if got.GetSampleCount() != want.GetSampleCount() {
				t.Errorf("count = %d, want %d", got.GetSampleCount(), want.GetSampleCount())
			}
			if math.Abs(got.GetSampleSum()-want.GetSampleSum()) > 1e-9*max(1, want.GetSampleSum()) {
				t.Errorf("sum = %v, want %v", got.GetSampleSum(), want.GetSampleSum())
			}
			wb, gb := want.GetBucket(), got.GetBucket()
			if len(gb) != len(wb) {
				t.Fatalf("%d buckets, want %d", len(gb), len(wb))
			}
			for i := range wb {
				if gb[i].GetUpperBound() != wb[i].GetUpperBound() || gb[i].GetCumulativeCount() != wb[i].GetCumulativeCount() {
					t.Errorf("bucket le=%v: %d, want le=%v: %d", gb[i].GetUpperBound(), gb[i].GetCumulativeCount(), wb[i].GetUpperBound(), wb[i].GetCumulativeCount())
				}
			}
		})
	}
}

func TestDurationsNegativeCountsAsZero(t *testing.T) {
	d := newDurations("d", "d", []float64{0.001})
	s := d.forQueue("ns.a")
	s.observe(-time.Second)
	s.flush()
	h := histogramOf(t, d)
	if h.GetSampleSum() != 0 || h.GetBucket()[0].GetCumulativeCount() != 1 {
		t.Fatalf("a negative duration: sum %v, first bucket %d; want 0 and 1", h.GetSampleSum(), h.GetBucket()[0].GetCumulativeCount())
	}
}

// histogramOf collects c's only histogram.
func histogramOf(t *testing.T, c prometheus.Collector) *dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric, 4)
	c.Collect(ch)
	close(ch)
	var out []*dto.Histogram
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		out = append(out, pb.GetHistogram())
	}
	if len(out) != 1 {
		t.Fatalf("collected %d histograms, want 1", len(out))
	}
	return out[0]
}

// TestDurationsSumQueuesOfOneName: a queue created again under the same
// name (or by a second Service on the same registry) writes a series of
// its own; the scrape shows their sum under the one name.
func TestDurationsSumQueuesOfOneName(t *testing.T) {
	d := newDurations("d", "d", []float64{0.001, 1})
	a, b := d.forQueue("ns.a"), d.forQueue("ns.a")
	a.observe(2 * time.Millisecond)
	b.observe(2 * time.Millisecond)
	b.observe(2 * time.Second)
	a.flush()
	b.flush()
	h := histogramOf(t, d)
	if h.GetSampleCount() != 3 || h.GetBucket()[1].GetCumulativeCount() != 2 || math.Abs(h.GetSampleSum()-2.004) > 1e-9 {
		t.Fatalf("count %d, le=1 %d, sum %v; want 3, 2, 2.004", h.GetSampleCount(), h.GetBucket()[1].GetCumulativeCount(), h.GetSampleSum())
	}
	d.forget("ns.a")
	ch := make(chan prometheus.Metric, 1)
	d.Collect(ch)
	if len(ch) != 0 {
		t.Fatal("a forgotten queue is still collected")
	}
}

// TestDurationsPublishInBatches: observations show once flushed, and by
// themselves every publishEvery observations.
func TestDurationsPublishInBatches(t *testing.T) {
	d := newDurations("d", "d", []float64{1})
	s := d.forQueue("ns.a")
	for range publishEvery - 1 {
		s.observe(time.Millisecond)
	}
	if got := histogramOf(t, d).GetSampleCount(); got != 0 {
		t.Fatalf("%d observations published before a batch was full", got)
	}
	s.observe(time.Millisecond)
	if got := histogramOf(t, d).GetSampleCount(); got != publishEvery {
		t.Fatalf("a full batch published %d observations, want %d", got, publishEvery)
	}
	s.observe(time.Millisecond)
	s.flush()
	h := histogramOf(t, d)
	if h.GetSampleCount() != publishEvery+1 || math.Abs(h.GetSampleSum()-float64(publishEvery+1)/1000) > 1e-9 {
		t.Fatalf("after flush: count %d sum %v, want %d and %v", h.GetSampleCount(), h.GetSampleSum(), publishEvery+1, float64(publishEvery+1)/1000)
	}
	s.flush() // nothing held: nothing changes
	if got := histogramOf(t, d).GetSampleCount(); got != publishEvery+1 {
		t.Fatalf("an empty flush changed the count to %d", got)
	}
}
