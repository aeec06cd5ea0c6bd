package testenv_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

// The race build is shared between go test, the tools make test builds and
// the programs tests build only while all of them use the same flags; a
// mismatch costs minutes of compiling on a cold machine without failing
// anything else, so it is checked here.
func TestRaceFlagsMatchTheMakefileAndScripts(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(testenv.RaceFlags(), " ")
	for _, c := range []struct {
		file string
		re   *regexp.Regexp
	}{
		{"Makefile", regexp.MustCompile(`(?m)^RACE_FLAGS := (.*)$`)},
		{"hack/setup-helm.sh", regexp.MustCompile(`(?m)^-race\) race=\(([^)]*)\)`)},
	} {
		data, err := os.ReadFile(filepath.Join(root, c.file))
		if err != nil {
			t.Fatal(err)
		}
		m := c.re.FindSubmatch(data)
		if m == nil {
			t.Errorf("%s: no race build flags found (pattern %s)", c.file, c.re)
			continue
		}
		if got := strings.TrimSpace(string(m[1])); got != want {
			t.Errorf("%s builds with %q, internal/testenv.RaceFlags with %q: make them equal so the compiled packages are shared", c.file, got, want)
		}
	}
}
