package toolcache_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gadgetpm/gadgetpm/internal/toolcache"
)

func TestDir(t *testing.T) {
	tests := []struct {
		name     string
		bin, xdg string
		home     string
		want     string
	}{
		{name: "GADGETPM_BIN wins", bin: "/cache/bin", xdg: "/xdg", home: "/home/u", want: "/cache/bin"},
		{name: "XDG_CACHE_HOME", xdg: "/xdg", home: "/home/u", want: "/xdg/gadgetpm"},
		{name: "HOME", home: "/home/u", want: "/home/u/.cache/gadgetpm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(toolcache.EnvDir, tc.bin)
			t.Setenv("XDG_CACHE_HOME", tc.xdg)
			t.Setenv("HOME", tc.home)
			got, err := toolcache.Dir()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Dir() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewestSkipsIncompleteVersions(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"1.35.0-linux-amd64", "1.36.0-linux-amd64", "1.36.3-linux-amd64"} {
		if err := os.MkdirAll(filepath.Join(toolcache.K8sDir(root), v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	complete := map[string]bool{"1.35.0-linux-amd64": true, "1.36.0-linux-amd64": true}
	got := toolcache.Newest(root, func(d string) bool { return complete[filepath.Base(d)] })
	if want := filepath.Join(toolcache.K8sDir(root), "1.36.0-linux-amd64"); got != want {
		t.Fatalf("Newest = %q, want %q", got, want)
	}
	if got := toolcache.Newest(t.TempDir(), func(string) bool { return true }); got != "" {
		t.Fatalf("Newest of an empty cache = %q, want none", got)
	}
}
