// Package igimage reads Inspektor Gadget's OCI image layout: a manifest
// (artifact type application/vnd.gadget.v1+binary) whose config is the
// gadget's gadget.yaml (application/vnd.gadget.config.v1+yaml; also read
// from a layer) and whose layers are its eBPF object
// (application/vnd.gadget.ebpf.program.v1+binary) and optionally its
// btfgen archive (application/vnd.gadget.btfgen.v1+binary), one manifest
// per architecture under an image index. It picks the manifest of the
// runtime's architecture, refuses what gadgetpm cannot run (a wasm layer,
// a missing layer), checks every layer by its descriptor's size before
// pulling it and by its digest while reading it, and lays the image out
// as a package directory in the package store, keyed by the manifest's
// digest.
//
// It is the image-to-package step shared by the cluster role
// (packages/fetch), the node role (packages/pull) and `gadgetpm gadget
// run oci://`. It resolves no versions, verifies no provenance and talks
// to no Helm: the node role links it.
package igimage
