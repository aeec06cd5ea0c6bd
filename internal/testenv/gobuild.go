package testenv

// GoBuildArgs returns the arguments of a "go build" that writes package
// pkg to out the way the running test binary was built: with -race when it
// has the race detector. The build then reuses the packages the test run
// already compiled instead of compiling every dependency a second time,
// which on a cold cache is minutes, and the built program reports data
// races too.
//
// The program is linked without DWARF (-ldflags=-w), like make test's test
// binaries: a third faster to link, and nothing the tests do needs it.
func GoBuildArgs(out, pkg string) []string {
	args := []string{"build", "-ldflags=-w"}
	if Race {
		args = append(args, "-race")
	}
	return append(args, "-o", out, pkg)
}
