package chartrepo_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// stockHelm returns the path of the stock helm CLI that
// hack/setup-helm.sh builds (once) and caches: with the race detector when
// this test binary has it, so that the build reuses the Helm SDK packages
// already compiled for the tests.
func stockHelm(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "hack", "setup-helm.sh")
	var args []string
	if testenv.Race {
		args = append(args, "-race")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(script, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/setup-helm.sh: %v: %s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// TestStockHelmCLIReadsBuiltRepository serves `repo build` output over
// loopback and uses it the way docs/repositories.md says: helm repo add,
// helm search repo, helm pull, helm show chart.
func TestStockHelmCLIReadsBuiltRepository(t *testing.T) {
	helm := stockHelm(t)
	out := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "execsnoop", Version: "1.0.0"},
		packagetest.Source{Name: "execsnoop", Version: "1.1.0"},
		packagetest.Source{Name: "net-base", Version: "2.0.0"})
	srv := httptest.NewServer(http.FileServer(http.Dir(out)))
	t.Cleanup(srv.Close)

	home := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(helm, args...)
		cmd.Env = append(os.Environ(),
			"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
			"HELM_DATA_HOME="+filepath.Join(home, "data"))
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}

	run("repo", "add", "gadgets", srv.URL)
	list := run("search", "repo", "gadgets/", "--versions")
	for _, want := range []string{"gadgets/execsnoop\t1.1.0", "gadgets/execsnoop\t1.0.0", "gadgets/net-base \t2.0.0"} {
		if !strings.Contains(strings.Join(strings.Fields(list), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("helm search repo lacks %q:\n%s", want, list)
		}
	}

	dest := t.TempDir()
	run("pull", "gadgets/execsnoop", "--version", "1.0.0", "--destination", dest)
	run("pull", "gadgets/net-base", "--destination", dest)
	for _, f := range []string{"execsnoop-1.0.0.tgz", "net-base-2.0.0.tgz"} {
		got, err := os.ReadFile(filepath.Join(dest, f))
		if err != nil {
			t.Fatalf("helm pull wrote no %s: %v", f, err)
		}
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("helm pull %s: %d bytes differ from the built %d bytes", f, len(got), len(want))
		}
	}
	// The pulled archive is a chart stock Helm loads.
	chart := run("show", "chart", filepath.Join(dest, "execsnoop-1.0.0.tgz"))
	if !strings.Contains(chart, "name: execsnoop") || !strings.Contains(chart, "version: 1.0.0") {
		t.Errorf("helm show chart:\n%s", chart)
	}
}

// TestSetupHelmScript checks hack/setup-helm.sh's cache lookup and its
// refusal of arguments it does not know, without building anything.
func TestSetupHelmScript(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	version, err := exec.Command("go", "list", "-C", root, "-m", "-f", "{{.Version}}", "helm.sh/helm/v3").Output()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	for _, dir := range []string{strings.TrimSpace(string(version)), strings.TrimSpace(string(version)) + "-race"} {
		if err := os.MkdirAll(filepath.Join(cache, "helm", dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cache, "helm", dir, "helm"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args      []string
		wantPath  string // last stdout line, relative to the cache
		wantError string
	}{
		{args: nil, wantPath: filepath.Join("helm", strings.TrimSpace(string(version)), "helm")},
		{args: []string{"-race"}, wantPath: filepath.Join("helm", strings.TrimSpace(string(version))+"-race", "helm")},
		{args: []string{"--fast"}, wantError: "unknown argument '--fast': expected no argument or -race"},
	} {
		t.Run(strings.Join(append([]string{"args"}, tc.args...), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(filepath.Join(root, "hack", "setup-helm.sh"), tc.args...)
			cmd.Env = append(os.Environ(), "GADGETPM_BIN="+cache)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if tc.wantError != "" {
				if err == nil || !strings.Contains(stderr.String(), tc.wantError) || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
					t.Fatalf("err %v, stderr %q: want a failure with the one line %q", err, stderr.String(), tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			if got := strings.TrimSpace(stdout.String()); got != filepath.Join(cache, tc.wantPath) {
				t.Fatalf("printed %q, want the cached %q", got, filepath.Join(cache, tc.wantPath))
			}
		})
	}
}
