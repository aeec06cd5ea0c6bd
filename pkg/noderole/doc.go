// Package noderole wires the node role of the operator: the Trace
// controller for the Traces whose spec.node is this node, the hub of
// Stream-mode outputs and its TLS listener (pkg/streamserver), and the controller
// manager they run in (scheme, REST mapper, metrics, health and readiness
// probes), and the node's part of the dump (DebugSource: its name and
// gadget runs). Run is the whole node-role process (cmd/gadgetpm-node),
// debug socket included; pkg/process uses New, NewManager and
// DebugSource for `gadgetpm operator --role=node|all`.
//
// The node role runs on every node whatever the cluster role's Lease
// says, so nothing here waits for leader election. It must not import the
// coordinator, the Helm release service (pkg/nelm) or Helm's action
// packages: a node binary never links the cluster role.
package noderole
