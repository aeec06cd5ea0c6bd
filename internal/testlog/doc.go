// Package testlog collects the lines a logr.Logger writes, for tests that
// assert what a component logged.
package testlog
