package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	helmrepo "helm.sh/helm/v3/pkg/repo"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

func TestRepoBuildAndLint(t *testing.T) {
	src := t.TempDir()
	packagetest.Write(t, src, packagetest.Source{Name: "execsnoop", Version: "1.0.0"})
	packagetest.Write(t, src, packagetest.Source{Name: "broken", Version: "0.1.0", Gadget: "name: x\ncolour: blue\n",
		Hooks: map[string]string{"bad.sh": "#!/bin/sh\nexit 2\n"}})
	out := filepath.Join(t.TempDir(), "repo")

	stdout, err := run(t, "repo", "build", src, "-o", out, "--url", "https://charts.example.com/g")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "packed execsnoop 1.0.0") || !strings.Contains(stdout, "wrote 2 package(s)") {
		t.Errorf("build output:\n%s", stdout)
	}
	idx, err := helmrepo.LoadIndexFile(filepath.Join(out, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cv, err := idx.Get("execsnoop", "1.0.0")
	if err != nil || cv.URLs[0] != "https://charts.example.com/g/execsnoop-1.0.0.tgz" || cv.Digest == "" {
		t.Fatalf("index entry %+v, %v", cv, err)
	}

	stdout, err = run(t, "package", "lint", filepath.Join(out, "execsnoop-1.0.0.tgz"))
	if err != nil || !strings.Contains(stdout, "execsnoop 1.0.0: ok (1 hook(s), 1 data source(s), 1 param(s))") {
		t.Fatalf("lint clean package: %v\n%s", err, stdout)
	}
	stdout, err = run(t, "package", "lint", filepath.Join(src, "broken"))
	if !errors.Is(err, errLintFailed) {
		t.Fatalf("lint broken package: err = %v", err)
	}
	for _, want := range []string{"gadget/gadget.yaml:2: field colour is not a known key", "hooks/bad.sh: --config exited with code 2"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("lint output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestRepoBuildAndLintBadArguments(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"repo", "build", dir}, "--output is required"},
		{[]string{"repo", "build", dir, "-o", filepath.Join(dir, "out")}, "no package source"},
		{[]string{"repo", "build", filepath.Join(dir, "nope"), "-o", dir}, "no such file"},
		{[]string{"repo", "build"}, "accepts 1 arg"},
		{[]string{"package", "lint", filepath.Join(dir, "nope")}, "no such file"},
		{[]string{"package", "lint"}, "accepts 1 arg"},
	}
	for _, tt := range tests {
		out, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error()+out, tt.want) {
			t.Errorf("%v: err = %v, out = %q, want %q", tt.args, err, out, tt.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "x.tgz"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "package", "lint", filepath.Join(dir, "x.tgz"))
	if !errors.Is(err, errLintFailed) || !strings.Contains(out, "x.tgz: extract archive: not a gzipped tar") {
		t.Errorf("junk archive: %v\n%s", err, out)
	}
}
