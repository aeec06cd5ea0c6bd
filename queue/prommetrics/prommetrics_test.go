package prommetrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/queue/prommetrics"
)

type fn func(context.Context) error

func (f fn) Name() string                      { return "t" }
func (f fn) Execute(ctx context.Context) error { return f(ctx) }

func TestQueueMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := prommetrics.NewWithRegisterer(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second provider on the same registry shares the collectors.
	if _, err := prommetrics.NewWithRegisterer(reg); err != nil {
		t.Fatalf("second registration: %v", err)
	}
	s := queue.NewService(queue.Options{Metrics: p, MaxAttempts: 2, BackoffBase: time.Millisecond, SucceededEvents: true})
	release := make(chan struct{})
	started := make(chan struct{})
	if err := s.Enqueue("ns.a", fn(func(context.Context) error { close(started); <-release; return nil })); err != nil {
		t.Fatal(err)
	}
	<-started
	for range 3 {
		if err := s.Enqueue("ns.a", fn(func(context.Context) error { return nil })); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Enqueue("ns.b", fn(func(context.Context) error { return errors.New("x") })); err != nil {
		t.Fatal(err)
	}
	<-s.Events() // ns.b failed twice

	want := map[string]float64{
		`gadgetpm_queue_length{queue="ns.a"}`:              3,
		`gadgetpm_queue_length{queue="ns.b"}`:              0,
		`gadgetpm_queue_task_failures_total{queue="ns.b"}`: 2,
		`gadgetpm_queue_task_run_seconds{queue="ns.b"}`:    2, // sample count
		`gadgetpm_queue_task_wait_seconds{queue="ns.b"}`:   1, // first start only
	}
	got := gather(t, reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	close(release)
	for range 4 {
		<-s.Events()
	}
	if got := gather(t, reg)[`gadgetpm_queue_task_run_seconds{queue="ns.a"}`]; got != 4 {
		t.Fatalf("ns.a run samples = %v, want 4", got)
	}
	if err := s.Remove(context.Background(), "ns.b"); err != nil {
		t.Fatal(err)
	}
	for k := range gather(t, reg) {
		if strings.Contains(k, `"ns.b"`) {
			t.Fatalf("removed queue's series %s still there", k)
		}
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultRegistry: New publishes on controller-runtime's registry (the
// one the operator's /metrics serves), and a second New shares the series
// of the first instead of failing or hiding them.
func TestDefaultRegistry(t *testing.T) {
	first, err := prommetrics.New()
	if err != nil {
		t.Fatal(err)
	}
	second, err := prommetrics.New()
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	first.ForQueue("default-registry-a", func() int { return 7 })
	second.ForQueue("default-registry-b", func() int { return 5 })
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lengths := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != prommetrics.LengthName {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "queue" {
					lengths[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	if lengths["default-registry-a"] != 7 || lengths["default-registry-b"] != 5 {
		t.Fatalf("%s on controller-runtime's registry: %v, want default-registry-a=7 and default-registry-b=5", prommetrics.LengthName, lengths)
	}
}

// gather returns every series as "name{queue=...}": value, with histogram
// sample counts as values.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var q string
			for _, l := range m.GetLabel() {
				if l.GetName() == "queue" {
					q = l.GetValue()
				}
			}
			key := mf.GetName() + `{queue="` + q + `"}`
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
