// Package chartcheck checks the operator's own Helm chart (charts/gadgetpm)
// the way an installer meets it: rendered by the Helm SDK for its defaults
// and for value variants, refused with a clear message for bad values, and
// installed into a real API server, whose authorizer then decides what the
// chart's RBAC lets the operator do.
//
// It holds tests only; the chart itself is the product.
package chartcheck
