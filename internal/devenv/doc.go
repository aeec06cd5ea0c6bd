// Package devenv is the embedded default behind `gadgetpm dev`: a complete
// local gadgetpm on one machine. It starts a kube-apiserver and etcd (the
// binaries the tests use, built by hack/setup-envtest.sh when missing) with
// gadgetpm's CRDs, packs the bundled packages of charts/packages into a
// repository served over HTTP on loopback, creates a PackageRepository and
// one GadgetPackage from it, writes an administrator's kubeconfig, runs the
// operator for the local node, and on cancellation stops all of it in the
// reverse order.
//
// It is a developer tool: it needs a gadgetpm checkout (charts/, hack/) and
// must not be used by the operator itself. Everything it writes lives under
// one directory (default <checkout>/hack/dev), which a lock file guards so
// two instances never share it.
package devenv
