// Package repoaccess decides what a PackageRepository may reach and with
// which credentials, for the cluster role's repository client
// (packages/packagerepository, packages/fetch) and the node role's
// download (packages/pull) alike:
//
//   - its Secrets (spec.secretRef, spec.verify.keyringSecretRef) are read
//     only from the cluster resource namespace: a PackageRepository is
//     cluster-scoped, so a Secret of any other namespace would let whoever
//     may create one borrow another tenant's credentials;
//   - plain HTTP (an http:// URL, or an oci:// registry over HTTP) needs
//     spec.insecure, and never carries credentials.
//
// A refusal is an *Error carrying the condition reason to report; it is
// decided before any Secret is read or any request is sent. The package
// reads Secrets and nothing else: it does not talk to repositories and
// links no Helm, so the node role may use it.
package repoaccess
