// Package packages manages gadget packages: repositories (Helm index and
// OCI), download with mandatory digest and optional provenance checks, safe
// extraction, loading (chart, schema, gadget metadata, eBPF catalog, hooks)
// and the per-package state machine with its queued tasks.
//
// The work is split into one subpackage per job:
//
//	repo        read a repository (http(s), file, oci), choose a version,
//	            download with digest check, verify provenance; build one
//	archive     extract an archive safely and atomically
//	store       archives and extracted packages by digest on disk
//	loader      load and check a package; package lint
//	deps        requirements between packages: unmet, order, cycles
//	repository  the PackageRepository controller; clients from its spec
//	fetch       the Download, Install and Load steps of a GadgetPackage
//	pull        a node's download: the archive of the installed digest,
//	            without Helm
//	packagetest package sources, repositories and a registry for tests
//
// Helm releases and hook execution are reached through interfaces that
// pkg/nelm and pkg/hooks implement.
package packages
