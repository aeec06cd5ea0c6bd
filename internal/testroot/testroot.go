package testroot

import (
	"os"
	"strconv"
	"testing"
)

// EnvCI is the variable that turns a skip for lack of root into a failure.
// Any value that strconv.ParseBool reads as true counts, as does any other
// non-empty value except "0" and "false".
const EnvCI = "CI"

// Require skips t (or, in CI, fails it) unless the process is root. what
// says what needs root, e.g. "loading eBPF".
func Require(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatalf("%s needs root, and %s=%q says this is CI, where the eBPF tests must run: run the tests as root", what, EnvCI, os.Getenv(EnvCI))
	}
	t.Skipf("%s needs root (CI runs the tests as root)", what)
}

// InCI reports whether $CI says this is a CI run.
func InCI() bool {
	v := os.Getenv(EnvCI)
	if v == "" {
		return false
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return true
}
