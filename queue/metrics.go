package queue

import "time"

// MetricsProvider creates the metrics of each queue. The Service asks for a
// queue's metrics when it creates the queue and calls Forget when the queue
// is removed, so label series of removed queues do not linger.
//
// The queue package does not depend on Prometheus; see
// queue/prommetrics for the implementation registered on
// controller-runtime's registry.
type MetricsProvider interface {
	// ForQueue returns the metrics of a new queue. length reports the
	// queue's pending tasks (the running one excluded) when called; it is
	// meant to be called when the metrics are read, so that the Service
	// does not report the length on every change, and never under a lock
	// (it takes the queue's).
	ForQueue(queue string, length func() int) QueueMetrics
	Forget(queue string)
}

// QueueMetrics receives the measurements of one queue. Its methods are
// called from the queue's worker, one call at a time, never under a lock;
// a queue created again under the same name after Remove gets its own
// QueueMetrics from ForQueue, whose calls start after the old worker's
// last.
//
// An implementation may hold observations back and publish them in
// batches: the worker calls Flush before it waits (its queue ran dry, a
// retry is due later, the queue closes) and before it calls OnDone or
// sends an event, so what a caller learns of a task the metrics show.
type QueueMetrics interface {
	// ObserveWait records how long a task waited from Enqueue to its first
	// start.
	ObserveWait(d time.Duration)
	// ObserveRun records how long one attempt ran.
	ObserveRun(d time.Duration)
	// IncFailures counts one failed attempt.
	IncFailures()
	// Flush publishes what the metrics hold back, if anything.
	Flush()
}

type noopMetrics struct{}

func (noopMetrics) ForQueue(string, func() int) QueueMetrics { return noopMetrics{} }
func (noopMetrics) Forget(string)                            {}
func (noopMetrics) ObserveWait(time.Duration)                {}
func (noopMetrics) ObserveRun(time.Duration)                 {}
func (noopMetrics) IncFailures()                             {}
func (noopMetrics) Flush()                                   {}

var (
	_ MetricsProvider = noopMetrics{}
	_ QueueMetrics    = noopMetrics{}
)
