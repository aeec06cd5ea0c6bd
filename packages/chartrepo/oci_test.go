package chartrepo_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

func TestOCI(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Version: "1.0.0"}, packagetest.Source{Version: "1.3.0"}, packagetest.Source{Version: "2.0.0"})
	url, user, pass := packagetest.OCIRegistry(t, out)

	c, err := chartrepo.New(chartrepo.Options{URL: url, Username: user, Password: pass, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := c.Index(ctx, "execsnoop")
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.Packages["execsnoop"]; len(got) != 3 || got[0].Version != "2.0.0" {
		t.Fatalf("versions = %+v, want 3, newest first", got)
	}
	v, err := chartrepo.Resolve(idx, "execsnoop", "^1")
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Download(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(out, "execsnoop-1.3.0.tgz"))
	if a.Digest != chartrepo.SHA256(want) || a.Version != "1.3.0" {
		t.Errorf("pulled %s %s, want 1.3.0 %s", a.Version, a.Digest, chartrepo.SHA256(want))
	}

	// A pinned digest that the registry does not match is refused.
	v.Digest = strings.Repeat("1", 64)
	if _, err := c.Download(ctx, v); !errors.Is(err, chartrepo.ErrDigestMismatch) {
		t.Errorf("pinned wrong digest: %v", err)
	}

	// Wrong credentials are reported with the registry's answer.
	bad, _ := chartrepo.New(chartrepo.Options{URL: url, Username: user, Password: "wrong", PlainHTTP: true})
	if _, err := bad.Index(ctx, "execsnoop"); err == nil || !strings.Contains(err.Error(), "list tags of") {
		t.Errorf("wrong password: %v", err)
	}
	// An unknown package is an error naming it.
	if _, err := c.Index(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "/gadgets/nope") {
		t.Errorf("unknown package: %v", err)
	}
}
