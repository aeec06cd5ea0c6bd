// Package nelm manages the Helm release of each gadget package through the
// Helm v3 SDK: install or upgrade (skipping no-op upgrades), delete,
// client-only rendering, and a drift monitor that reports rendered objects
// that went missing.
//
// It does not decide when a release changes; the package manager does.
package nelm
