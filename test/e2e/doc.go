// Package e2e holds the end-to-end tests: the operator's chart installed
// with the helm CLI, from the image hack/image.sh builds, into the real
// single-node cluster of hack/e2e-cluster.sh (kubelet, containerd, runc,
// CNI), asserted through the real API and real pods.
//
// The tests are behind the build tag e2e and need that cluster: run them
// with `make e2e`, which starts it, runs them and tears it down. They do
// not start a cluster themselves and they own nothing outside it but the
// HTTP server that serves their package repository on the node's bridge
// address.
package e2e
