package chartrepo_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// TestIndexEntriesHelmReadsWrong covers index entries that Helm's loader
// accepts but changes or cannot use: each is listed by Malformed, and
// Download refuses it with a message naming the chart, the version and
// the field, over file:// and HTTP alike.
func TestIndexEntriesHelmReadsWrong(t *testing.T) {
	tests := []struct {
		name    string
		entry   packagetest.IndexEntry
		version string // as Helm reads it
		is      error
		want    []string
	}{
		{"digest of 64 unquoted zeros", packagetest.IndexEntry{Digest: strings.Repeat("0", 64)}, "1.0.0", chartrepo.ErrBadDigest,
			[]string{"execsnoop 1.0.0", "field digest is not a string", "YAML reads it as the integer 0", "quote it"}},
		{"digest of 64 unquoted digits", packagetest.IndexEntry{Digest: strings.Repeat("1", 64)}, "1.0.0", chartrepo.ErrBadDigest,
			[]string{"execsnoop 1.0.0", "field digest is not a string", "floating-point number"}},
		{"octal-looking digest", packagetest.IndexEntry{Digest: "0" + strings.Repeat("7", 20)}, "1.0.0", chartrepo.ErrBadDigest,
			[]string{"execsnoop 1.0.0", "field digest is not a string", "integer"}},
		{"md5 digest", packagetest.IndexEntry{Digest: "md5:d41d8cd98f00b204e9800998ecf8427e"}, "1.0.0", chartrepo.ErrBadDigest,
			[]string{"execsnoop 1.0.0", `field digest "md5:d41d8cd98f00b204e9800998ecf8427e" is not sha256:<64 hex digits> or 64 hex digits`}},
		{"short digest", packagetest.IndexEntry{Digest: "sha256:abc123"}, "1.0.0", chartrepo.ErrBadDigest,
			[]string{"execsnoop 1.0.0", `field digest "sha256:abc123" is not sha256:<64 hex digits>`}},
		{"no urls", packagetest.IndexEntry{URL: packagetest.Omit, Digest: strings.Repeat("a", 64)}, "1.0.0", chartrepo.ErrBadIndexEntry,
			[]string{"execsnoop 1.0.0", "field urls is missing or empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
			tt.entry.Name = "execsnoop"
			if tt.entry.URL == "" {
				tt.entry.URL = "execsnoop-1.0.0.tgz"
			}
			packagetest.WriteIndex(t, out, tt.entry)
			for _, url := range []string{"file://" + out, serve(t, out, false, "", "").URL} {
				c, err := chartrepo.New(chartrepo.Options{URL: url})
				if err != nil {
					t.Fatal(err)
				}
				idx, err := c.Index(ctx)
				if err != nil {
					t.Fatalf("%s: the rest of the index stays usable: %v", url, err)
				}
				if m := idx.Malformed(); len(m) != 1 || !containsAll(m[0], tt.want) {
					t.Errorf("%s: Malformed() = %q, want one naming %q", url, m, tt.want)
				}
				if p := idx.Problems(); len(p) != 0 {
					t.Errorf("%s: Problems() = %q, want none: the entry is malformed, not missing its digest", url, p)
				}
				v, err := chartrepo.Resolve(idx, "execsnoop", "*")
				if err != nil {
					t.Fatal(err)
				}
				if v.Version != tt.version {
					t.Errorf("%s: Helm read version %q, want %q", url, v.Version, tt.version)
				}
				_, err = c.Download(ctx, v)
				if !errors.Is(err, tt.is) || !containsAll(err.Error(), tt.want) {
					t.Errorf("%s: Download err = %v, want %v naming %q", url, err, tt.is, tt.want)
				}
				if errors.Is(err, chartrepo.ErrDigestMismatch) {
					t.Errorf("%s: a malformed digest is not a mismatch: %v", url, err)
				}
			}
		})
	}

	// A version YAML reads as a number fails Helm's loader, and with it the
	// whole index: the error names the entry and the field.
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	packagetest.WriteIndex(t, out, packagetest.IndexEntry{Name: "execsnoop", Version: "1.10", URL: "execsnoop-1.0.0.tgz"})
	for _, url := range []string{"file://" + out, serve(t, out, false, "", "").URL} {
		c, err := chartrepo.New(chartrepo.Options{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Index(ctx)
		if want := []string{url, "parse index.yaml", "execsnoop 1.1", "field version is not a string", "floating-point number 1.1", "quote it"}; err == nil || !containsAll(err.Error(), want) {
			t.Errorf("%s: Index err = %v, want one naming %q", url, err, want)
		}
	}

	// The same digits quoted are a string: checked, and here wrong.
	out = packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	packagetest.WriteIndex(t, out, packagetest.IndexEntry{Name: "execsnoop", Digest: `"` + strings.Repeat("0", 64) + `"`})
	c, err := chartrepo.New(chartrepo.Options{URL: "file://" + out})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := c.Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := chartrepo.Resolve(idx, "execsnoop", "*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, v); !errors.Is(err, chartrepo.ErrDigestMismatch) || !strings.Contains(err.Error(), "index says sha256:"+strings.Repeat("0", 64)) || len(idx.Malformed()) != 0 {
		t.Errorf("quoted digits: %v (malformed %q), want a digest mismatch against the 64 zeros", err, idx.Malformed())
	}
}

// TestArchiveMustHoldTheChartItIsListedAs: an index entry (or OCI
// reference) whose archive holds a chart of another name or version is
// refused, naming both, from every kind of repository.
func TestArchiveMustHoldTheChartItIsListedAs(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "evil-renamed"},
		packagetest.Source{Name: "execsnoop", Version: "2.0.0"},
		packagetest.Source{Name: "fine"})
	packagetest.WriteIndex(t, out,
		packagetest.IndexEntry{Name: "evil-alias", URL: "evil-renamed-1.0.0.tgz"},
		packagetest.IndexEntry{Name: "execsnoop", Version: "1.0.0", URL: "execsnoop-2.0.0.tgz"},
		packagetest.IndexEntry{Name: "fine"})

	// The registry gets only the good chart under its own name; the others
	// are pushed as a careless or hostile client can.
	ociDir := filepath.Join(t.TempDir(), "oci")
	packagetest.Repo(t, ociDir, packagetest.Source{Name: "fine"})
	ociURL, user, pass := packagetest.OCIRegistry(t, filepath.Join(ociDir, "repo"))
	base := strings.TrimPrefix(ociURL, "oci://")
	packagetest.PushOCIAs(t, base+"/evil-alias:1.0.0", filepath.Join(out, "evil-renamed-1.0.0.tgz"))
	packagetest.PushOCIAs(t, base+"/execsnoop:1.0.0", filepath.Join(out, "execsnoop-2.0.0.tgz"))

	cases := []struct {
		pkg  string
		want []string // empty: installs
	}{
		{"evil-alias", []string{"evil-alias 1.0.0", `the Chart.yaml in evil-`, `says name "evil-renamed"`}},
		{"execsnoop", []string{"execsnoop 1.0.0", `says version "2.0.0"`}},
		{"fine", nil},
	}
	for _, src := range []struct {
		name   string
		opts   chartrepo.Options
		listed string
	}{
		{"file", chartrepo.Options{URL: "file://" + out}, "the index lists"},
		{"http", chartrepo.Options{URL: serve(t, out, false, "", "").URL}, "the index lists"},
		{"oci", chartrepo.Options{URL: ociURL, Username: user, Password: pass, PlainHTTP: true}, "it was pulled as"},
	} {
		t.Run(src.name, func(t *testing.T) {
			c, err := chartrepo.New(src.opts)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := c.Index(ctx, "evil-alias", "execsnoop", "fine")
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range cases {
				v, err := chartrepo.Resolve(idx, tc.pkg, "*")
				if err != nil {
					t.Fatal(err)
				}
				a, err := c.Download(ctx, v)
				if tc.want == nil {
					if err != nil || a.Name != tc.pkg {
						t.Errorf("%s: %v", tc.pkg, err)
					}
					continue
				}
				if !errors.Is(err, chartrepo.ErrChartMismatch) || !containsAll(err.Error(), append(tc.want, src.listed)) {
					t.Errorf("%s: err = %v, want %v naming %q and %q", tc.pkg, err, chartrepo.ErrChartMismatch, tc.want, src.listed)
				}
			}
		})
	}
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
