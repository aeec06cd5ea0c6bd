package testenv

// GoBuildArgs returns the arguments of a "go build" that writes package
// pkg to out the way the running test binary was built: with -race when it
// has the race detector. The build then reuses the packages the test run
// already compiled instead of compiling every dependency a second time,
// which on a cold cache is minutes, and the built program reports data
// races too.
//
// The program is compiled without DWARF and linked without DWARF or a
// symbol table, like make test's test binaries (the Makefile's RACE_FLAGS and GO_TEST_FLAGS): the flags must
// match theirs for the compiled packages to be shared, and nothing the
// tests do needs DWARF.
func GoBuildArgs(out, pkg string) []string {
	args := []string{"build", "-ldflags=-s"}
	if Race {
		args = append(args, RaceFlags()...)
	}
	return append(args, "-o", out, pkg)
}

// RaceFlags are the build flags of make test's race-enabled build (the
// Makefile's RACE_FLAGS). A test that runs make or go with GOFLAGS passes
// these so that its builds reuse the test run's compiled packages.
func RaceFlags() []string { return []string{"-race", "-gcflags=all=-dwarf=false"} }
