// Package layering holds the test that keeps the module's layers as
// docs/development.md draws them: it reads the import graph with
// `go list -deps` and fails on an import that crosses a layer the wrong
// way. It has no code of its own.
package layering
