package fetch_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

var ctx = context.Background()

// createRepo creates a PackageRepository with spec for the test.
func createRepo(t *testing.T, spec v1alpha1.PackageRepositorySpec) string {
	t.Helper()
	return env.Repository(t, "fetch", spec)
}

func gadgetPackage(repository, constraint, settings string) *v1alpha1.GadgetPackage {
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Name: "exec", Namespace: "gadget"},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: repository, Package: "execsnoop", Version: constraint},
	}
	if settings != "" {
		gp.Spec.Settings = &apiextensionsv1.JSON{Raw: []byte(settings)}
	}
	return gp
}

// newFetcher returns a Fetcher over a store in dir reading repository
// Secrets from ns, the cluster resource namespace ("" for none).
func newFetcher(t *testing.T, dir string, ns string) *fetch.Fetcher {
	t.Helper()
	s, err := store.New(dir, archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := fetch.New(fetch.Options{Reader: env.Client, Store: s, Access: repoaccess.Policy{ClusterResourceNamespace: ns}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// countingServer serves dir and counts archive downloads.
func countingServer(t *testing.T, dir string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	fs := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".tgz") {
			n.Add(1)
		}
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestInstallFromHTTPFileAndOCI(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Version: "1.0.0"}, packagetest.Source{Version: "1.4.0"}, packagetest.Source{Version: "2.0.0"})
	srv, _ := countingServer(t, out)
	ociURL, user, pass, ca := packagetest.OCIRegistryTLS(t, out)
	ns := env.Namespace(t)
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "reg", Namespace: ns},
		Data: map[string][]byte{"username": []byte(user), "password": []byte(pass)}}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(out, "execsnoop-1.4.0.tgz"))
	for _, spec := range []v1alpha1.PackageRepositorySpec{
		{URL: srv.URL, Insecure: true},
		{URL: "file://" + out},
		{URL: ociURL, CABundle: ca, SecretRef: &v1alpha1.SecretReference{Name: "reg", Namespace: ns}},
	} {
		t.Run(strings.SplitN(spec.URL, ":", 2)[0], func(t *testing.T) {
			f := newFetcher(t, t.TempDir(), ns)
			gp := gadgetPackage(createRepo(t, spec), ">=1.0 <2", `{"maxRows": 5}`)
			d, err := f.Download(ctx, gp)
			if err != nil {
				t.Fatal(err)
			}
			if d.Version != "1.4.0" || d.Digest != chartrepo.SHA256(want) || d.Cached {
				t.Errorf("downloaded %+v, want 1.4.0 %s", d, chartrepo.SHA256(want))
			}
			_, p := installAndLoad(t, f, d, gp)
			if p.Version != "1.4.0" || len(p.Hooks) != 1 || p.Catalog == nil {
				t.Errorf("loaded %s with %d hooks, catalog %v", p.Version, len(p.Hooks), p.Catalog)
			}
		})
	}
}

func TestUpgradeRestartAndRepositoryLoss(t *testing.T) {
	dir := t.TempDir()
	out := packagetest.Repo(t, dir, packagetest.Source{Version: "1.0.0"})
	srv, downloads := countingServer(t, out)
	name := createRepo(t, v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true})
	cache := t.TempDir()
	gp := gadgetPackage(name, "^1", "")

	d, err := newFetcher(t, cache, "").Download(ctx, gp)
	if err != nil || d.Version != "1.0.0" {
		t.Fatalf("first download %+v, %v", d, err)
	}
	gp.Status.Version, gp.Status.Digest = d.Version, d.Digest

	// A restarted operator (new Fetcher, same data dir) reuses the archive.
	d2, err := newFetcher(t, cache, "").Download(ctx, gp)
	if err != nil || !d2.Cached || downloads.Load() != 1 {
		t.Fatalf("after restart: %+v, %v, %d downloads", d2, err, downloads.Load())
	}

	// A new version the constraint allows is picked up; 2.0.0 is not.
	packagetest.Write(t, filepath.Join(dir, "more", "a"), packagetest.Source{Version: "1.1.0"})
	packagetest.Write(t, filepath.Join(dir, "more", "b"), packagetest.Source{Version: "2.0.0"})
	if _, err := chartrepo.Build(ctx, filepath.Join(dir, "more"), out, chartrepo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	d3, err := newFetcher(t, cache, "").Download(ctx, gp)
	if err != nil || d3.Version != "1.1.0" || d3.Cached {
		t.Fatalf("upgrade: %+v, %v", d3, err)
	}

	// The repository goes away: the installed digest is served from the
	// store, so the package keeps running.
	srv.Close()
	d4, err := newFetcher(t, cache, "").Download(ctx, gp)
	if err != nil || !d4.Offline || d4.Digest != d.Digest {
		t.Fatalf("offline: %+v, %v", d4, err)
	}
	// Without an installed digest there is nothing to fall back to.
	gp.Status.Digest = ""
	_, err = newFetcher(t, cache, "").Download(ctx, gp)
	if fetch.ReasonOf(err, "") != v1alpha1.ReasonIndexFailed || !strings.Contains(err.Error(), "PackageRepository "+name) {
		t.Fatalf("offline without install: %v", err)
	}
}

func TestFailuresCarryTheirReason(t *testing.T) {
	tampered := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	f, _ := os.OpenFile(filepath.Join(tampered, "execsnoop-1.0.0.tgz"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("x")
	f.Close()
	good := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	badPkg := packagetest.Repo(t, t.TempDir(), packagetest.Source{Gadget: "name: x\nunknown: 1\n"})

	// A signed repository and its keyring.
	signed := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	ring := sign(t, filepath.Join(signed, "execsnoop-1.0.0.tgz"), "signer")
	ns := env.Namespace(t)
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: ns},
		Data: map[string][]byte{"pubring.gpg": ring}}); err != nil {
		t.Fatal(err)
	}
	// Index entries whose archive holds another chart, and entries Helm
	// reads wrong, served over HTTP.
	mismatch := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "evil-renamed"}, packagetest.Source{Version: "2.0.0"})
	renamedDir := filepath.Join(t.TempDir(), "renamed")
	copyInto(t, renamedDir, filepath.Join(mismatch, "evil-renamed-1.0.0.tgz"))
	renamed, _ := countingServer(t, packagetest.WriteIndex(t, renamedDir, packagetest.IndexEntry{Name: "execsnoop", URL: "evil-renamed-1.0.0.tgz"}))
	reversionedDir := filepath.Join(t.TempDir(), "reversioned")
	copyInto(t, reversionedDir, filepath.Join(mismatch, "execsnoop-2.0.0.tgz"))
	reversioned, _ := countingServer(t, packagetest.WriteIndex(t, reversionedDir, packagetest.IndexEntry{Name: "execsnoop", Version: "1.0.0", URL: "execsnoop-2.0.0.tgz"}))
	numericDir := filepath.Join(t.TempDir(), "numeric")
	copyInto(t, numericDir, filepath.Join(good, "execsnoop-1.0.0.tgz"))
	numeric, _ := countingServer(t, packagetest.WriteIndex(t, numericDir, packagetest.IndexEntry{Name: "execsnoop", Digest: strings.Repeat("0", 64)}))
	noURLs, _ := countingServer(t, packagetest.WriteIndex(t, t.TempDir(), packagetest.IndexEntry{Name: "execsnoop", URL: packagetest.Omit, Digest: strings.Repeat("a", 64)}))
	ociURL, user, pass, ca := packagetest.OCIRegistryTLS(t, t.TempDir())
	packagetest.PushOCIAsTLS(t, strings.TrimPrefix(ociURL, "oci://")+"/execsnoop:1.0.0", filepath.Join(mismatch, "evil-renamed-1.0.0.tgz"), ca)
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "reg", Namespace: ns},
		Data: map[string][]byte{"username": []byte(user), "password": []byte(pass)}}); err != nil {
		t.Fatal(err)
	}

	always := &v1alpha1.Verification{Mode: v1alpha1.VerifyAlways, KeyringSecretRef: &v1alpha1.SecretReference{Name: "keys", Namespace: ns}}

	tests := []struct {
		name       string
		spec       v1alpha1.PackageRepositorySpec
		repository string // overrides the created one
		constraint string
		settings   string
		reason     string
		want       string
	}{
		{"missing repository", v1alpha1.PackageRepositorySpec{}, "nope", "", "", v1alpha1.ReasonIndexFailed, "read PackageRepository nope named by spec.repository"},
		{"digest mismatch", v1alpha1.PackageRepositorySpec{URL: "file://" + tampered}, "", "", "", v1alpha1.ReasonVerifyFailed, "digest mismatch"},
		{"no matching version", v1alpha1.PackageRepositorySpec{URL: "file://" + good}, "", ">=3", "", v1alpha1.ReasonDownloadFailed, `no version matching ">=3"`},
		{"provenance required and missing", v1alpha1.PackageRepositorySpec{URL: "file://" + good, Verify: always}, "", "", "", v1alpha1.ReasonVerifyFailed, "no provenance file"},
		{"provenance required and present", v1alpha1.PackageRepositorySpec{URL: "file://" + signed, Verify: always}, "", "", "", "", ""},
		{"keyring secret missing", v1alpha1.PackageRepositorySpec{URL: "file://" + signed, Verify: &v1alpha1.Verification{Mode: v1alpha1.VerifyAlways, KeyringSecretRef: &v1alpha1.SecretReference{Name: "gone", Namespace: ns}}}, "", "", "", v1alpha1.ReasonVerifyFailed, "keyringSecretRef: read Secret " + ns + "/gone"},
		{"settings fail the schema", v1alpha1.PackageRepositorySpec{URL: "file://" + good}, "", "", `{"maxRows": 0}`, v1alpha1.ReasonInvalidSettings, "spec.settings: settings of execsnoop 1.0.0 do not match its values.schema.json"},
		{"bad package", v1alpha1.PackageRepositorySpec{URL: "file://" + badPkg}, "", "", "", v1alpha1.ReasonLoadFailed, "gadget/gadget.yaml:2: field unknown is not a known key"},
		{"archive holds a chart of another name", v1alpha1.PackageRepositorySpec{URL: renamed.URL, Insecure: true}, "", "", "", v1alpha1.ReasonVerifyFailed, `the index lists execsnoop 1.0.0, but the Chart.yaml in evil-renamed-1.0.0.tgz says name "evil-renamed"`},
		{"archive holds another version", v1alpha1.PackageRepositorySpec{URL: reversioned.URL, Insecure: true}, "", "", "", v1alpha1.ReasonVerifyFailed, `the index lists execsnoop 1.0.0, but the Chart.yaml in execsnoop-2.0.0.tgz says version "2.0.0"`},
		{"registry holds a chart of another name", v1alpha1.PackageRepositorySpec{URL: ociURL, CABundle: ca, SecretRef: &v1alpha1.SecretReference{Name: "reg", Namespace: ns}}, "", "", "", v1alpha1.ReasonVerifyFailed, `it was pulled as execsnoop 1.0.0 (name = last path element, version = tag), but the Chart.yaml in execsnoop-1.0.0.tgz says name "evil-renamed"`},
		{"digest YAML reads as a number", v1alpha1.PackageRepositorySpec{URL: numeric.URL, Insecure: true}, "", "", "", v1alpha1.ReasonVerifyFailed, "execsnoop 1.0.0: field digest is not a string: YAML reads it as the integer 0"},
		{"entry without urls", v1alpha1.PackageRepositorySpec{URL: noURLs.URL, Insecure: true}, "", "", "", v1alpha1.ReasonIndexFailed, "execsnoop 1.0.0: field urls is missing or empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.repository
			if name == "" {
				name = createRepo(t, tt.spec)
			}
			f := newFetcher(t, t.TempDir(), ns)
			gp := gadgetPackage(name, tt.constraint, tt.settings)
			d, err := f.Download(ctx, gp)
			if err == nil {
				var dir string
				if dir, err = f.Install(ctx, d.Digest); err == nil {
					_, err = f.Load(ctx, dir, gp)
				}
			}
			if tt.reason == "" {
				if err != nil || !d.Verified {
					t.Fatalf("err = %v, verified = %v", err, d.Verified)
				}
				return
			}
			if err == nil || fetch.ReasonOf(err, "") != tt.reason || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (reason %q), want reason %s with %q", err, fetch.ReasonOf(err, ""), tt.reason, tt.want)
			}
		})
	}
}

func copyInto(t *testing.T, dir, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(file)), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCachedArchiveIsCheckedUnderItsNewName: an archive already in the
// store is not downloaded again, but an index that lists its digest under
// another name is still refused.
func TestCachedArchiveIsCheckedUnderItsNewName(t *testing.T) {
	honest := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "net-base"})
	aliasDir := filepath.Join(t.TempDir(), "alias")
	copyInto(t, aliasDir, filepath.Join(honest, "net-base-1.0.0.tgz"))
	alias, downloads := countingServer(t, packagetest.WriteIndex(t, aliasDir, packagetest.IndexEntry{Name: "execsnoop", URL: "net-base-1.0.0.tgz"}))

	cache := t.TempDir()
	gp := gadgetPackage(createRepo(t, v1alpha1.PackageRepositorySpec{URL: "file://" + honest}), "", "")
	gp.Spec.Package = "net-base"
	if _, err := newFetcher(t, cache, "").Download(ctx, gp); err != nil {
		t.Fatal(err)
	}
	_, err := newFetcher(t, cache, "").Download(ctx, gadgetPackage(createRepo(t, v1alpha1.PackageRepositorySpec{URL: alias.URL, Insecure: true}), "", ""))
	want := `the index lists execsnoop 1.0.0, but the Chart.yaml in execsnoop-1.0.0.tgz says name "net-base"`
	if fetch.ReasonOf(err, "") != v1alpha1.ReasonVerifyFailed || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v (reason %q), want %s with %q", err, fetch.ReasonOf(err, ""), v1alpha1.ReasonVerifyFailed, want)
	}
	if downloads.Load() != 0 {
		t.Errorf("%d downloads, want the cached archive", downloads.Load())
	}
}
