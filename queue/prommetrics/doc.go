// Package prommetrics records queue metrics in Prometheus, on
// controller-runtime's registry by default, so they are served by the
// operator's metrics endpoint with everything else.
//
// It implements queue.MetricsProvider and nothing more; the queue package
// itself does not depend on Prometheus.
package prommetrics
