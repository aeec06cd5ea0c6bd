// Package packages manages gadget packages: repositories (Helm index and
// OCI), download with mandatory digest and optional provenance checks, safe
// extraction, loading (chart, schema, gadget metadata, eBPF catalog, hooks)
// and the per-package state machine with its queued tasks.
//
// Helm releases and hook execution are reached through interfaces that
// pkg/nelm and pkg/hooks implement.
package packages
