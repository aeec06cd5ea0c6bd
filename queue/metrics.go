package queue

import "time"

// MetricsProvider creates the metrics of each queue. The Service asks for a
// queue's metrics when it creates the queue and calls Forget when the queue
// is removed, so label series of removed queues do not linger.
//
// The queue package does not depend on Prometheus; see
// queue/prometheus for the implementation registered on
// controller-runtime's registry.
type MetricsProvider interface {
	ForQueue(queue string) QueueMetrics
	Forget(queue string)
}

// QueueMetrics receives the measurements of one queue. Its methods are
// called from the queue's worker and from Enqueue, never under a lock, and
// must be safe for concurrent use.
type QueueMetrics interface {
	// SetLength records the number of pending tasks (the running one
	// excluded).
	SetLength(n int)
	// ObserveWait records how long a task waited from Enqueue to its first
	// start.
	ObserveWait(d time.Duration)
	// ObserveRun records how long one attempt ran.
	ObserveRun(d time.Duration)
	// IncFailures counts one failed attempt.
	IncFailures()
}

type noopMetrics struct{}

func (noopMetrics) ForQueue(string) QueueMetrics { return noopMetrics{} }
func (noopMetrics) Forget(string)                {}
func (noopMetrics) SetLength(int)                {}
func (noopMetrics) ObserveWait(time.Duration)    {}
func (noopMetrics) ObserveRun(time.Duration)     {}
func (noopMetrics) IncFailures()                 {}

var (
	_ MetricsProvider = noopMetrics{}
	_ QueueMetrics    = noopMetrics{}
)
