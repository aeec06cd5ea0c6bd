// Package chartcheck checks the operator's own Helm chart (charts/gadgetpm)
// the way an installer meets it: rendered by the Helm SDK for its defaults
// and for value variants, refused with a clear message for bad values, and
// installed into a real API server, whose authorizer then decides what the
// chart's RBAC lets each role and the hooks do and whose PodSecurity
// admission judges both pods; and the node role's capabilities are tried
// on the machine's kernel with a real gadget.
//
// It holds tests only; the chart itself is the product.
package chartcheck
