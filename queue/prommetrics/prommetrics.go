package prommetrics

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gadgetpm/gadgetpm/queue"
)

// Metric names, each labelled by queue.
const (
	LengthName   = "gadgetpm_queue_length"
	WaitName     = "gadgetpm_queue_task_wait_seconds"
	RunName      = "gadgetpm_queue_task_run_seconds"
	FailuresName = "gadgetpm_queue_task_failures_total"
)

// Provider is a queue.MetricsProvider backed by Prometheus collectors.
// It is safe for concurrent use.
type Provider struct {
	length   *lengths
	wait     *durations
	run      *durations
	failures *prometheus.CounterVec
}

var _ queue.MetricsProvider = (*Provider)(nil)

// New registers the queue metrics on controller-runtime's metrics.Registry.
// Calling it again reuses the collectors already registered.
func New() (*Provider, error) { return NewWithRegisterer(ctrlmetrics.Registry) }

// NewWithRegisterer registers the queue metrics on reg, reusing collectors
// of the same name already registered there.
func NewWithRegisterer(reg prometheus.Registerer) (*Provider, error) {
	buckets := []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300}
	p := &Provider{
		length: newLengths(LengthName, "Tasks waiting in the queue, the running one excluded."),
		wait:   newDurations(WaitName, "Seconds from enqueue to the first start of a task.", buckets),
		run:    newDurations(RunName, "Seconds one attempt of a task ran.", buckets),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: FailuresName, Help: "Failed task attempts.",
		}, []string{"queue"}),
	}
	var err error
	if p.length, err = register(reg, p.length); err != nil {
		return nil, err
	}
	if p.wait, err = register(reg, p.wait); err != nil {
		return nil, err
	}
	if p.run, err = register(reg, p.run); err != nil {
		return nil, err
	}
	if p.failures, err = register(reg, p.failures); err != nil {
		return nil, err
	}
	return p, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register queue metrics: %w", err)
}

// ForQueue returns the metrics of one queue.
func (p *Provider) ForQueue(name string, length func() int) queue.QueueMetrics {
	p.length.set(name, length)
	return &queueMetrics{
		wait:     p.wait.forQueue(name),
		run:      p.run.forQueue(name),
		failures: p.failures.WithLabelValues(name),
	}
}

// Forget deletes a removed queue's series.
func (p *Provider) Forget(name string) {
	p.length.forget(name)
	p.wait.forget(name)
	p.run.forget(name)
	p.failures.DeleteLabelValues(name)
}

type queueMetrics struct {
	wait     *durationSeries
	run      *durationSeries
	failures prometheus.Counter
}

func (m *queueMetrics) ObserveWait(d time.Duration) { m.wait.observe(d) }
func (m *queueMetrics) ObserveRun(d time.Duration)  { m.run.observe(d) }
func (m *queueMetrics) IncFailures()                { m.failures.Inc() }
func (m *queueMetrics) Flush()                      { m.wait.flush(); m.run.flush() }
