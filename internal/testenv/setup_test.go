package testenv_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

type scriptRun struct {
	stdout, stderr string
	err            error
}

// runSetup runs hack/setup-envtest.sh n times at once with extra
// environment and returns every run's output.
func runSetup(t *testing.T, n int, extraEnv ...string) []scriptRun {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	runs := make([]scriptRun, n)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(filepath.Join(root, "hack", "setup-envtest.sh"))
			cmd.Env = append(os.Environ(), extraEnv...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			runs[i] = scriptRun{stdout: stdout.String(), stderr: stderr.String(), err: err}
		})
	}
	wg.Wait()
	return runs
}

// A ready cache answers at once with the same directory for every caller,
// however many ask together, and changes nothing.
func TestSetupEnvtestOnAReadyCache(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set; run the tests through 'make test' or export KUBEBUILDER_ASSETS=\"$(hack/setup-envtest.sh)\"")
	}
	// assets is <cache root>/k8s/<version>-linux-<arch>.
	cacheRoot := filepath.Dir(filepath.Dir(assets))
	before := listDir(t, assets)
	for i, r := range runSetup(t, 4, "GADGETPM_BIN="+cacheRoot) {
		if r.err != nil {
			t.Fatalf("run %d: %v\nstderr:\n%s", i, r.err, r.stderr)
		}
		if got := strings.TrimSpace(r.stdout); got != assets {
			t.Errorf("run %d printed %q, want %q", i, got, assets)
		}
		if r.stderr != "" {
			t.Errorf("run %d wrote to stderr on a ready cache:\n%s", i, r.stderr)
		}
	}
	if after := listDir(t, assets); after != before {
		t.Errorf("a run on a ready cache changed it:\nbefore: %s\nafter:  %s", before, after)
	}
}

// A build that cannot happen fails every concurrent caller with one line
// saying what to do, and leaves no binary, finished or partial, in the
// cache.
func TestSetupEnvtestFailureIsOneClearLine(t *testing.T) {
	cacheRoot := t.TempDir()
	runs := runSetup(t, 2,
		"GADGETPM_BIN="+cacheRoot,
		"KUBE_VERSION=0.0.1", // no such k8s.io/kubernetes release
		"GOPROXY=off",        // fail at once instead of asking the proxy
		"GOFLAGS=-mod=mod",
	)
	for i, r := range runs {
		if r.err == nil {
			t.Fatalf("run %d succeeded:\n%s", i, r.stdout)
		}
		var errLines []string
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if strings.HasPrefix(l, "setup-envtest: error:") {
				errLines = append(errLines, l)
			}
		}
		if len(errLines) != 1 {
			t.Fatalf("run %d: want exactly one error line, got %d:\n%s", i, len(errLines), r.stderr)
		}
		if !strings.Contains(errLines[0], "run hack/setup-envtest.sh again") {
			t.Errorf("run %d: the error line does not say what to do: %s", i, errLines[0])
		}
		if strings.TrimSpace(r.stdout) != "" {
			t.Errorf("run %d printed a path although it failed: %q", i, r.stdout)
		}
	}
	assets := filepath.Join(cacheRoot, "k8s")
	filepath.WalkDir(assets, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), "kube-apiserver") {
			t.Errorf("a failed build left %s in the cache", p)
		}
		return nil
	})
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.Name() + "@" + info.ModTime().String() + " ")
	}
	return b.String()
}
