// Package bundled checks the gadget packages bundled under charts/packages/
// the way users meet them: each one lints clean, its chart renders, and its
// hooks speak the shell-operator protocol when pkg/hooks runs them, with
// their object patches applied to a real API server.
//
// It holds tests only. It must not hold code the operator runs: loading,
// running and installing packages belong to packages/, pkg/hooks and
// pkg/nelm.
package bundled
