// Package chartrepo reads gadget package repositories and writes them: it
// is the client of Helm chart repositories and OCI registries.
//
// A Client reads one repository: an http(s) or file:// Helm chart
// repository (index.yaml beside the archives) or an oci:// registry path
// holding one chart per package. It lists packages and versions (Index),
// chooses a version by semver constraint (Resolve) and downloads an archive
// with its sha256 digest checked, its Chart.yaml checked against the name
// and version it was listed (or tagged) as (CheckChart) and, when asked,
// its Helm provenance verified (Download, Verify). Every HTTP request runs
// under the caller's context and a deadline of Options.Timeout that closes
// its connection (ErrTimeout). Helm's repo, registry and provenance
// packages do the protocol work; index.yaml is
// never parsed by hand. It is read a second time with the YAML reader
// Helm's loader uses, only to find the entries that loader silently
// changes (a digest YAML reads as a number) or cannot use (Malformed).
//
// Build packs package sources into a repository that stock Helm reads.
//
// The package does not cache, extract or load archives (see packages/store,
// packages/archive and packages/loader) and knows nothing of Kubernetes.
package chartrepo
