package chartrepo_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	helmprovenance "helm.sh/helm/v3/pkg/provenance"
	helmrepo "helm.sh/helm/v3/pkg/repo"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

var ctx = context.Background()

func TestBuildIsReadableByStockHelm(t *testing.T) {
	dir := t.TempDir()
	out := packagetest.Repo(t, dir,
		packagetest.Source{Name: "execsnoop", Version: "1.0.0"},
		packagetest.Source{Name: "execsnoop", Version: "1.1.0"},
		packagetest.Source{Name: "net-base", Version: "2.0.0"})
	idx, err := helmrepo.LoadIndexFile(filepath.Join(out, "index.yaml"))
	if err != nil {
		t.Fatalf("stock Helm cannot read the index: %v", err)
	}
	for _, want := range [][2]string{{"execsnoop", "1.0.0"}, {"execsnoop", "1.1.0"}, {"net-base", "2.0.0"}} {
		cv, err := idx.Get(want[0], want[1])
		if err != nil {
			t.Fatalf("index lacks %s %s: %v", want[0], want[1], err)
		}
		data, err := os.ReadFile(filepath.Join(out, cv.URLs[0]))
		if err != nil {
			t.Fatal(err)
		}
		if cv.Digest != chartrepo.SHA256(data) {
			t.Errorf("%s %s: index digest %s, archive %s", want[0], want[1], cv.Digest, chartrepo.SHA256(data))
		}
		ch, err := helmloader.LoadArchive(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("stock Helm cannot load %s: %v", cv.URLs[0], err)
		}
		if ch.Metadata.Version != want[1] {
			t.Errorf("chart version %s, want %s", ch.Metadata.Version, want[1])
		}
	}
	// Hooks must stay executable, which 'helm package' does not do.
	modes := tarModes(t, filepath.Join(out, "execsnoop-1.0.0.tgz"))
	if m := modes["execsnoop/hooks/10-startup.sh"]; m&0o111 == 0 {
		t.Errorf("hook mode %o lost its executable bit", m)
	}
	if m := modes["execsnoop/Chart.yaml"]; m&0o111 != 0 {
		t.Errorf("Chart.yaml mode %o became executable", m)
	}
	// Rebuilding the same sources yields the same digests.
	first, _ := os.ReadFile(filepath.Join(out, "execsnoop-1.0.0.tgz"))
	if _, err := chartrepo.Build(ctx, filepath.Join(dir, "src"), out, chartrepo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(filepath.Join(out, "execsnoop-1.0.0.tgz"))
	if !bytes.Equal(first, second) {
		t.Error("rebuilding an unchanged source changed its archive")
	}
}

func TestBuildBadSources(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, src string)
		want  string
	}{
		{"empty dir", func(t *testing.T, src string) {}, "no package source"},
		{"invalid Chart.yaml", func(t *testing.T, src string) {
			packagetest.Write(t, src, packagetest.Source{ChartYAML: "apiVersion: v2\nname: x\n"})
		}, "version is required"},
		{"symlink in source", func(t *testing.T, src string) {
			root := packagetest.Write(t, src, packagetest.Source{})
			if err := os.Symlink("/etc/passwd", filepath.Join(root, "templates", "passwd")); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			tt.setup(t, src)
			_, err := chartrepo.Build(ctx, src, t.TempDir(), chartrepo.BuildOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func tarModes(t *testing.T, p string) map[string]int64 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h.Mode
	}
}

// serve serves dir over HTTP(S) with optional basic auth.
func serve(t *testing.T, dir string, tls bool, user, pass string) *httptest.Server {
	t.Helper()
	fsrv := http.FileServer(http.Dir(dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		fsrv.ServeHTTP(w, r)
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv
}

func TestClientInstallsFromEverySource(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Version: "1.0.0"}, packagetest.Source{Version: "1.2.0"}, packagetest.Source{Version: "2.0.0-rc.1"})
	plain := serve(t, out, false, "", "")
	authed := serve(t, out, false, "alice", "s3cret")
	tlsSrv := serve(t, out, true, "", "")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})

	tests := []struct {
		name    string
		opts    chartrepo.Options
		wantErr string
	}{
		{"file", chartrepo.Options{URL: "file://" + out}, ""},
		{"http", chartrepo.Options{URL: plain.URL}, ""},
		{"http basic auth", chartrepo.Options{URL: authed.URL, Username: "alice", Password: "s3cret"}, ""},
		{"http wrong password", chartrepo.Options{URL: authed.URL, Username: "alice", Password: "nope"}, "401"},
		{"https with CA bundle", chartrepo.Options{URL: tlsSrv.URL, CABundle: caPEM}, ""},
		{"https without CA bundle", chartrepo.Options{URL: tlsSrv.URL}, "certificate"},
		{"file missing dir", chartrepo.Options{URL: "file://" + filepath.Join(out, "nope")}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := chartrepo.New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := c.Index(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(idx.Digest, "sha256:") || len(idx.Digest) != 71 {
				t.Errorf("index digest %q", idx.Digest)
			}
			v, err := chartrepo.Resolve(idx, "execsnoop", ">=1.0 <2")
			if err != nil {
				t.Fatal(err)
			}
			if v.Version != "1.2.0" {
				t.Errorf("resolved %s, want 1.2.0", v.Version)
			}
			a, err := c.Download(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			if a.Digest != v.Digest || a.Filename != "execsnoop-1.2.0.tgz" {
				t.Errorf("archive %s digest %s, want execsnoop-1.2.0.tgz %s", a.Filename, a.Digest, v.Digest)
			}
			if _, err := helmloader.LoadArchive(bytes.NewReader(a.Data)); err != nil {
				t.Errorf("downloaded archive does not load: %v", err)
			}
		})
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"ftp://example.com/x", `scheme "ftp" is not supported`},
		{"http:///nohost", "has no host"},
		{"file://relative/dir", "want file:///absolute/dir"},
		{"oci:///x", "no registry host"},
		{"%zz", "parse repository url"},
	} {
		if _, err := chartrepo.New(chartrepo.Options{URL: tt.url}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q) = %v, want %q", tt.url, err, tt.want)
		}
	}
	if _, err := chartrepo.New(chartrepo.Options{URL: "https://x", CABundle: []byte("not pem")}); err == nil || !strings.Contains(err.Error(), "caBundle holds no PEM certificate") {
		t.Errorf("bad caBundle: %v", err)
	}
}

func TestResolve(t *testing.T) {
	idx := &chartrepo.Index{Packages: map[string][]chartrepo.Version{"p": {
		{Name: "p", Version: "2.0.0-rc.1"}, {Name: "p", Version: "1.10.0"}, {Name: "p", Version: "1.2.0"},
		{Name: "p", Version: "1.1.0"}, {Name: "p", Version: "0.9.0"},
	}}}
	tests := []struct {
		constraint, want, wantErr string
	}{
		{"", "1.10.0", ""},
		{"*", "1.10.0", ""},
		{">=1.0 <2", "1.10.0", ""},
		{"~1.1", "1.1.0", ""},
		{"^0.9", "0.9.0", ""},
		{"1.2.x", "1.2.0", ""},
		{">=2.0.0-rc.0", "2.0.0-rc.1", ""},
		{">=2", "", `no version matching ">=2"`},
		{"latest", "", `version constraint "latest" for p`},
	}
	for _, tt := range tests {
		t.Run(tt.constraint, func(t *testing.T) {
			v, err := chartrepo.Resolve(idx, "p", tt.constraint)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Version != tt.want {
				t.Errorf("got %s, want %s", v.Version, tt.want)
			}
		})
	}
	_, err := chartrepo.Resolve(idx, "q", "*")
	if !errors.Is(err, chartrepo.ErrNotFound) || !strings.Contains(err.Error(), "package q") || !strings.Contains(err.Error(), "it has p") {
		t.Errorf("missing package: %v", err)
	}
}

func TestBadIndexAndDigests(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		// indexErr is expected from Index, downloadErr from Download.
		indexErr, downloadErr string
		is                    error
	}{
		{"malformed index", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "index.yaml"), "apiVersion: v1\nentries: [unclosed\n")
		}, "parse index.yaml", "", nil},
		{"index with unknown key", func(t *testing.T, dir string) {
			appendTo(t, filepath.Join(dir, "index.yaml"), "bogus: true\n")
		}, "parse index.yaml", "", nil},
		{"index without apiVersion", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "index.yaml"), "entries: {}\n")
		}, "no API version", "", nil},
		{"empty index", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "index.yaml"), "")
		}, "empty", "", nil},
		{"entry without digest", func(t *testing.T, dir string) {
			rewriteIndex(t, dir, func(cv *helmrepo.ChartVersion) { cv.Digest = "" })
		}, "", "has no digest", chartrepo.ErrNoDigest},
		{"archive changed after indexing", func(t *testing.T, dir string) {
			appendTo(t, filepath.Join(dir, "execsnoop-1.0.0.tgz"), "tampered")
		}, "", "digest mismatch", chartrepo.ErrDigestMismatch},
		{"wrong digest in index", func(t *testing.T, dir string) {
			rewriteIndex(t, dir, func(cv *helmrepo.ChartVersion) { cv.Digest = strings.Repeat("0", 64) })
		}, "", "index says sha256:0000", chartrepo.ErrDigestMismatch},
		{"archive missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "execsnoop-1.0.0.tgz")); err != nil {
				t.Fatal(err)
			}
		}, "", "missing from the repository", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
			tt.mutate(t, out)
			for _, url := range []string{"file://" + out, serve(t, out, false, "", "").URL} {
				c, err := chartrepo.New(chartrepo.Options{URL: url})
				if err != nil {
					t.Fatal(err)
				}
				idx, err := c.Index(ctx)
				if tt.indexErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.indexErr) || !strings.Contains(err.Error(), url) {
						t.Fatalf("%s: Index err = %v, want %q naming the repository", url, err, tt.indexErr)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				v, err := chartrepo.Resolve(idx, "execsnoop", "*")
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Download(ctx, v)
				if err == nil || !strings.Contains(err.Error(), tt.downloadErr) || !strings.Contains(err.Error(), "execsnoop 1.0.0") {
					t.Fatalf("%s: Download err = %v, want %q naming the package", url, err, tt.downloadErr)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("err %v is not %v", err, tt.is)
				}
				if tt.is == chartrepo.ErrNoDigest && len(idx.Problems()) != 1 {
					t.Errorf("Problems() = %v, want the entry without digest", idx.Problems())
				}
			}
		})
	}
}

func rewriteIndex(t *testing.T, dir string, f func(*helmrepo.ChartVersion)) {
	t.Helper()
	p := filepath.Join(dir, "index.yaml")
	idx, err := helmrepo.LoadIndexFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, cvs := range idx.Entries {
		for _, cv := range cvs {
			f(cv)
		}
	}
	if err := idx.WriteFile(p, 0o644); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// signer makes a fresh OpenPGP key and returns a function signing an
// archive (writing <archive>.prov) and the public keyring.
func signer(t *testing.T, name string) (func(t *testing.T, archive string), []byte) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test", name+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ring bytes.Buffer
	if err := e.Serialize(&ring); err != nil {
		t.Fatal(err)
	}
	sig := &helmprovenance.Signatory{Entity: e, KeyRing: openpgp.EntityList{e}}
	return func(t *testing.T, archive string) {
		t.Helper()
		prov, err := sig.ClearSign(archive)
		if err != nil {
			t.Fatal(err)
		}
		write(t, archive+".prov", prov)
	}, ring.Bytes()
}

func TestProvenance(t *testing.T) {
	sign, keyring := signer(t, "gadget-signer")
	_, otherKeyring := signer(t, "someone-else")
	signMalory, _ := signer(t, "malory")

	tests := []struct {
		name    string
		prepare func(t *testing.T, archive string)
		mode    chartrepo.VerifyMode
		keyring []byte
		wantErr string
		is      error
		ok      bool // Verified
	}{
		{"always, signed", sign, chartrepo.VerifyAlways, keyring, "", nil, true},
		{"if possible, signed", sign, chartrepo.VerifyIfPossible, keyring, "", nil, true},
		{"if possible, unsigned", func(*testing.T, string) {}, chartrepo.VerifyIfPossible, keyring, "", nil, false},
		{"never, unsigned", func(*testing.T, string) {}, chartrepo.VerifyNever, nil, "", nil, false},
		{"always, unsigned", func(*testing.T, string) {}, chartrepo.VerifyAlways, keyring, "no provenance file", chartrepo.ErrNoProvenance, false},
		{"always, signed by an unknown key", signMalory, chartrepo.VerifyAlways, keyring, "provenance verification failed", chartrepo.ErrBadProvenance, false},
		{"always, keyring of someone else", sign, chartrepo.VerifyAlways, otherKeyring, "provenance verification failed", chartrepo.ErrBadProvenance, false},
		{"always, empty keyring", sign, chartrepo.VerifyAlways, nil, "keyring is empty", nil, false},
		{"always, keyring garbage", sign, chartrepo.VerifyAlways, []byte("garbage"), "read keyring", nil, false},
		{"always, provenance garbage", func(t *testing.T, a string) { write(t, a+".prov", "garbage") }, chartrepo.VerifyAlways, keyring, "provenance verification failed", chartrepo.ErrBadProvenance, false},
		{"unknown mode", sign, "Sometimes", keyring, `verify mode "Sometimes"`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
			tt.prepare(t, filepath.Join(out, "execsnoop-1.0.0.tgz"))
			srv := serve(t, out, false, "", "")
			c, err := chartrepo.New(chartrepo.Options{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			idx, err := c.Index(ctx)
			if err != nil {
				t.Fatal(err)
			}
			v, _ := chartrepo.Resolve(idx, "execsnoop", "*")
			a, err := c.Download(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			res, err := chartrepo.Verify(a, tt.mode, tt.keyring)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("err %v is not %v", err, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Verified != tt.ok {
				t.Errorf("Verified = %v, want %v", res.Verified, tt.ok)
			}
			if tt.ok && (len(res.SignedBy) == 0 || !strings.Contains(res.SignedBy[0], "gadget-signer")) {
				t.Errorf("SignedBy = %v", res.SignedBy)
			}
		})
	}
}
