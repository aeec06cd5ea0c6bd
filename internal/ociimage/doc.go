// Package ociimage writes container images as image tarballs (the
// `docker save` layout that `ctr images import` and `crane push` read)
// from plain files on disk, without a container engine or a registry.
//
// It owns the image's layers, config and tag; it does not build the
// binaries or the root file system it packs (hack/image.sh does) and it
// never talks to a registry.
package ociimage
