// Package toolcache says where the project's built tools are cached: the
// control plane binaries (kube-apiserver, etcd, kubectl), the helm CLI and
// controller-gen that hack/setup-envtest.sh, hack/setup-helm.sh and the
// Makefile build once.
//
// The cache lives outside any checkout, so that a fresh clone on a machine
// that built them before rebuilds nothing. It owns the location only; it
// never builds or deletes anything.
package toolcache
