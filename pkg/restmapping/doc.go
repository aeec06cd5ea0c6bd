// Package restmapping is the process's one view of the kinds the API
// server serves: a cached discovery client and a REST mapper over it that
// every service shares (the controller manager's client and caches, the
// Kubernetes events monitors, the object patcher, hooks' kind resolution
// and Helm releases), so that the API is discovered once rather than once
// per service.
//
// Both are lazy: New contacts nothing, and the first lookup discovers the
// API. A lookup that misses (a kind, plural or short name the cache does
// not hold) refreshes discovery and tries once more, so a
// CustomResourceDefinition created after the first lookup is found
// without a restart; Reset forgets the cache at once, for a caller that
// knows it created kinds.
//
// It knows nothing of hooks, packages or Helm, and it watches nothing.
package restmapping
