// Package packagerepository runs the PackageRepository controller and turns a
// PackageRepository into a chartrepo.Client (credentials and CA bundle from its
// spec and Secrets, keyring for provenance checks), as packages/repoaccess
// allows: Secrets only from the cluster resource namespace, plain HTTP
// only with spec.insecure and never with credentials.
//
// The controller syncs every repository on spec.interval: it reads the
// index (for an oci:// registry, the tags of the packages GadgetPackages
// ask for, since registries cannot list their repositories) and writes
// status: the Ready condition with a reason (and the versions that cannot
// be installed: no digest, malformed entry), lastSyncTime, indexDigest and
// the packages with their newest versions (bounded). A repository that
// cannot be read goes Ready=False and keeps its last good package list;
// installed packages are not touched; it is retried with backoff, and a
// sync that got no answer within spec.timeout says so (reason Timeout).
// Repositories sync in parallel (Reconciler.Workers), so a slow one
// delays only itself. A repository the policy refuses goes
// Ready=False and Stalled=True with the refusal's reason, and is not
// synced again until it changes. It runs on the leader only.
//
// It does not download or install packages (see packages/fetch).
package packagerepository
