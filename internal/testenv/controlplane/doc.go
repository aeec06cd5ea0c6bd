// Command controlplane starts the control plane one `make test` run
// shares (internal/testenv: kube-apiserver and etcd, gadgetpm's CRDs
// installed), writes its kubeconfig and stops it on SIGTERM or SIGINT,
// or when the script that started it (hack/test-controlplane.sh) dies.
// It is test support: nothing of the product imports or runs it.
package main
