// Package pull puts the archive of a package's installed digest into the
// package store, for the node role: it reads the GadgetPackage's
// PackageRepository and its credentials Secret (as packages/repoaccess
// allows: from the cluster resource namespace only, never sent over plain
// HTTP), finds the archive the repository lists under that digest
// (index.yaml of an http(s):// or
// file:// repository; the blob of that digest in an oci:// registry),
// downloads it and checks it against the digest before storing it. In an
// oci:// registry the digest may be an Inspektor Gadget image's manifest:
// its layers are pulled and stored as a package directory
// (packages/igimage).
//
// The cluster role chose the version and verified it (provenance included)
// before recording the digest in the package's status; a node only fetches
// those exact bytes. So the package does not resolve versions, verify
// provenance, load charts or talk to Helm, and must not: it is what keeps
// the Helm SDK out of the node role's binary (internal/layering).
package pull
