package testenv

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildKubectl builds the stock kubectl (internal/kubectl, k8s.io/kubectl
// at the version go.mod requires) into the test's temporary directory and
// returns its path. It is built the way the test binary was (with -race
// under a race run), so it reuses the packages the test build compiled and
// costs a link.
func BuildKubectl(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "kubectl")
	cmd := exec.Command("go", GoBuildArgs(out, "./internal/kubectl")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kubectl (go %v): %v\n%s", cmd.Args[1:], err, b)
	}
	return out
}
