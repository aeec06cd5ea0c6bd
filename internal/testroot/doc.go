// Package testroot lets a test that needs root (loading eBPF) skip when the
// process is not root, except in CI: with CI set (as CI services set it),
// such a test fails instead, so that a run that is not root cannot go green
// without the eBPF tests. Skips for missing kernel facts stay with the tests
// themselves; this package decides only about root.
package testroot
