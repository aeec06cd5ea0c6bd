// Package hooks speaks the shell-operator hook protocol: it parses the output
// of `hook --config`, builds binding contexts in shell-operator's JSON shapes,
// runs hook executables with their files and minimal environment, and reads
// back values patches, object patches and metrics.
//
// It does not watch Kubernetes (kubeevents/ does) or apply object patches
// (pkg/objectpatch does).
package hooks
