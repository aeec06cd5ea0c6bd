package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/store"
)

func TestStoreSurvivesRestart(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	data, err := os.ReadFile(filepath.Join(out, "execsnoop-1.0.0.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	digest := chartrepo.SHA256(data)
	dir := t.TempDir()
	s, err := store.New(dir, archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Archive(digest); ok {
		t.Fatal("empty store has the archive")
	}
	if err := s.PutArchive(digest, data); err != nil {
		t.Fatal(err)
	}
	pkgDir, err := s.Unpack(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(pkgDir, "hooks", "10-startup.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("hook not extracted executable: %v %v", fi, err)
	}

	// A new Store on the same directory (a restarted operator) has it.
	s2, _ := store.New(dir, archive.Limits{})
	if _, ok := s2.Archive(digest); !ok {
		t.Fatal("restarted store lost the archive")
	}
	if again, err := s2.Unpack(context.Background(), digest); err != nil || again != pkgDir {
		t.Fatalf("Unpack after restart = %s, %v", again, err)
	}

	// A corrupted archive counts as absent and is removed.
	if err := os.WriteFile(filepath.Join(dir, "archives", digest+".tgz"), []byte("rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.Archive(digest); ok {
		t.Fatal("corrupted archive reported present")
	}
	if err := s2.Remove(digest); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pkgDir); !os.IsNotExist(err) {
		t.Error("Remove left the package directory")
	}
}

func TestStoreRejectsBadInput(t *testing.T) {
	s, _ := store.New(t.TempDir(), archive.Limits{})
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"wrong data", s.PutArchive(strings.Repeat("a", 64), []byte("x")), "not sha256:aaaa"},
		{"bad digest", s.PutArchive("../../etc", []byte("x")), `digest "../../etc": want 64 lowercase hex`},
		{"unpack missing", func() error { _, err := s.Unpack(context.Background(), strings.Repeat("b", 64)); return err }(), "not in the store"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, tt.err, tt.want)
		}
	}
}
