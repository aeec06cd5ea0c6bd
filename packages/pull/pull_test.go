package pull_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/pull"
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
	return env.Repository(t, "pull", spec)
}

func createSecret(t *testing.T, ns, name, user, pass string) *v1alpha1.SecretReference {
	t.Helper()
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data: map[string][]byte{"username": []byte(user), "password": []byte(pass)}}); err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.SecretReference{Name: name, Namespace: ns}
}

// installed is a GadgetPackage as the cluster role leaves it: Running at
// version, with the archive's digest.
func installed(repository, version, digest string) *v1alpha1.GadgetPackage {
	return &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Name: "exec", Namespace: "gadget"},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: repository, Package: "execsnoop", Version: "*"},
		Status:     v1alpha1.GadgetPackageStatus{Phase: v1alpha1.PhaseRunning, Enabled: true, Version: version, Digest: digest},
	}
}

// newPuller returns a Puller reading repository Secrets from ns, the
// cluster resource namespace.
func newPuller(t *testing.T, ns string) (*pull.Puller, *store.Store) {
	t.Helper()
	s, err := store.New(t.TempDir(), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pull.New(pull.Options{Reader: env.Client, Store: s, Access: repoaccess.Policy{ClusterResourceNamespace: ns}})
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// authServer serves dir over HTTPS behind basic auth and counts archive
// downloads; caPEM is its certificate (spec.caBundle).
func authServer(t *testing.T, dir, user, pass string) (srv *httptest.Server, caPEM []byte, downloads *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	fs := http.FileServer(http.Dir(dir))
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(r.URL.Path, ".tgz") {
			n.Add(1)
		}
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), &n
}

// TestFetchArchiveOfInstalledDigest: a node fetches exactly the archive
// whose digest the package's status records, from every kind of
// repository, also when the repository offers newer versions that match
// spec.version (the cluster role has not upgraded yet), and only once.
func TestFetchArchiveOfInstalledDigest(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Version: "1.0.0"}, packagetest.Source{Version: "1.4.0"}, packagetest.Source{Version: "2.0.0"})
	want, err := os.ReadFile(filepath.Join(out, "execsnoop-1.4.0.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	srv, ca, downloads := authServer(t, out, "node", "s3cret")
	ociURL, user, pass, ociCA := packagetest.OCIRegistryTLS(t, out)
	ns := env.Namespace(t)
	for _, tc := range []struct {
		name string
		spec v1alpha1.PackageRepositorySpec
	}{
		{"https with credentials", v1alpha1.PackageRepositorySpec{URL: srv.URL, CABundle: ca, SecretRef: createSecret(t, ns, "http", "node", "s3cret")}},
		{"file", v1alpha1.PackageRepositorySpec{URL: "file://" + out}},
		{"oci with credentials", v1alpha1.PackageRepositorySpec{URL: ociURL, CABundle: ociCA, SecretRef: createSecret(t, ns, "oci", user, pass)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newPuller(t, ns)
			gp := installed(createRepo(t, tc.spec), "1.4.0", sha(want))
			before := downloads.Load()
			for range 2 {
				if err := p.FetchArchive(ctx, gp); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := s.Archive(sha(want))
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("the store does not hold execsnoop 1.4.0 (sha256:%s) after FetchArchive", sha(want))
			}
			if tc.spec.URL == srv.URL {
				if n := downloads.Load() - before; n != 1 {
					t.Errorf("downloaded the archive %d times, want once (then from the store)", n)
				}
			}
		})
	}
}

// TestFetchArchiveFailures: each failure names the package, the
// repository and what is wrong, and stores nothing.
func TestFetchArchiveFailures(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Version: "1.0.0"}, packagetest.Source{Version: "1.4.0"})
	v1, _ := os.ReadFile(filepath.Join(out, "execsnoop-1.0.0.tgz"))
	v14, _ := os.ReadFile(filepath.Join(out, "execsnoop-1.4.0.tgz"))
	// a repository whose index promises 1.4.0's digest for 1.0.0's file
	tampered := t.TempDir()
	if err := os.WriteFile(filepath.Join(tampered, "execsnoop-1.0.0.tgz"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	packagetest.WriteIndex(t, tampered, packagetest.IndexEntry{Name: "execsnoop", Digest: sha(v14)})
	srv, ca, _ := authServer(t, out, "node", "s3cret")
	ociURL, user, pass, ociCA := packagetest.OCIRegistryTLS(t, out)
	ns := env.Namespace(t)
	unknown := strings.Repeat("ab", 32)

	for _, tc := range []struct {
		name   string
		spec   *v1alpha1.PackageRepositorySpec // nil: no such PackageRepository
		digest string
		want   []string
		is     error
	}{
		{name: "digest no longer listed", spec: &v1alpha1.PackageRepositorySpec{URL: "file://" + out}, digest: unknown,
			want: []string{"package execsnoop with sha256:" + unknown, "not listed by the repository", "PackageRepository pull-"}, is: pull.ErrNotListed},
		{name: "archive does not match its digest", spec: &v1alpha1.PackageRepositorySpec{URL: "file://" + tampered}, digest: sha(v14),
			want: []string{"the archive is sha256:" + sha(v1), "the package's status records sha256:" + sha(v14)}},
		{name: "wrong credentials", spec: &v1alpha1.PackageRepositorySpec{URL: srv.URL, CABundle: ca, SecretRef: createSecret(t, ns, "wrong", "node", "nope")}, digest: sha(v1),
			want: []string{"read index", "401 Unauthorized"}},
		{name: "credentials Secret without password", spec: &v1alpha1.PackageRepositorySpec{URL: srv.URL, CABundle: ca, SecretRef: createSecret(t, ns, "half", "node", "")}, digest: sha(v1),
			want: []string{"spec.secretRef: Secret " + ns + "/half has no key \"password\""}},
		{name: "blob not in the registry", spec: &v1alpha1.PackageRepositorySpec{URL: ociURL, CABundle: ociCA, SecretRef: createSecret(t, ns, "oci", user, pass)}, digest: unknown,
			want: []string{"pull ", "/execsnoop@sha256:" + unknown}},
		{name: "no such repository", digest: sha(v1), want: []string{"read PackageRepository nope named by spec.repository"}},
		{name: "no digest in status", spec: &v1alpha1.PackageRepositorySpec{URL: "file://" + out},
			want: []string{"package gadget/exec records no digest in its status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newPuller(t, ns)
			repo := "nope"
			if tc.spec != nil {
				repo = createRepo(t, *tc.spec)
			}
			err := p.FetchArchive(ctx, installed(repo, "1.0.0", tc.digest))
			if err == nil {
				t.Fatal("FetchArchive succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if tc.digest != "" {
				if _, ok := s.Archive(tc.digest); ok {
					t.Errorf("the store holds sha256:%s after a failed fetch", tc.digest)
				}
			}
		})
	}
}

// TestFetchArchiveRefusals: a node refuses what the cluster role refuses
// (packages/repoaccess), naming the repository's field, before it reads a
// Secret or sends a request.
func TestFetchArchiveRefusals(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Version: "1.0.0"})
	v1, _ := os.ReadFile(filepath.Join(out, "execsnoop-1.0.0.tgz"))
	allowed, tenant := env.Namespace(t), env.Namespace(t)
	srv, ca, downloads := authServer(t, out, "node", "s3cret")
	var requests atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.FileServer(http.Dir(out)).ServeHTTP(w, r)
	}))
	t.Cleanup(plain.Close)
	for _, tc := range []struct {
		name   string
		spec   v1alpha1.PackageRepositorySpec
		reason string
		want   string
	}{
		{"secret of another namespace", v1alpha1.PackageRepositorySpec{URL: srv.URL, CABundle: ca, SecretRef: createSecret(t, tenant, "creds", "node", "s3cret")},
			repoaccess.ReasonSecretNamespaceNotAllowed, `spec.secretRef.namespace is "` + tenant + `"`},
		{"http without insecure", v1alpha1.PackageRepositorySpec{URL: plain.URL}, repoaccess.ReasonInsecureNotAllowed, "spec.insecure: true"},
		{"credentials over http", v1alpha1.PackageRepositorySpec{URL: plain.URL, Insecure: true, SecretRef: createSecret(t, allowed, "creds", "node", "s3cret")},
			repoaccess.ReasonCredentialsOverPlainHTTP, "credentials are never sent over plain HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newPuller(t, allowed)
			repo := createRepo(t, tc.spec)
			err := p.FetchArchive(ctx, installed(repo, "1.0.0", sha(v1)))
			if repoaccess.ReasonOf(err) != tc.reason || !strings.Contains(err.Error(), "PackageRepository "+repo) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %s naming the repository and %q", err, tc.reason, tc.want)
			}
		})
	}
	// The HTTPS server serves the archive to the borrowed credentials;
	// neither server was asked for anything.
	if n := downloads.Load(); n != 0 {
		t.Errorf("the archive was downloaded %d times with the borrowed Secret, want never", n)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the plain HTTP server got %d requests, want none", n)
	}
}
