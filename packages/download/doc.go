// Package download reads remote content through a size limit: an HTTP(S)
// GET whose Content-Length is checked before the body is read and whose
// body is read through the limit (never buffered past it), and OCI
// registry blobs and manifests checked by their descriptor sizes before
// they are fetched. It owns no state.
//
// The cluster role's repository client (packages/chartrepo) and the node
// role's download by digest (packages/pull) both read through it, so a
// repository that serves more than it should costs either role at most
// the limit in memory. It links no Helm: the node role imports it.
package download
