// Package kubeevents watches Kubernetes for hooks' kubernetes bindings: one
// dynamic informer per binding with selectors and a jqFilter, snapshots,
// Synchronization and Event delivery on a channel, and pause/resume.
//
// It does not run hooks; it only reports what changed.
package kubeevents
