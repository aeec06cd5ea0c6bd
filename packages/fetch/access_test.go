package fetch_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	helmprovenance "helm.sh/helm/v3/pkg/provenance"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// sign writes a Helm provenance file beside the archive at path, signed by
// a new key named name, and returns that key's public keyring.
func sign(t *testing.T, path, name string) []byte {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := (&helmprovenance.Signatory{Entity: e}).ClearSign(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".prov", []byte(prov), 0o644); err != nil {
		t.Fatal(err)
	}
	var ring bytes.Buffer
	if err := e.Serialize(&ring); err != nil {
		t.Fatal(err)
	}
	return ring.Bytes()
}

// TestCachedProvenanceIsVerifiedOffline: when the repository cannot be
// read, the stored archive of the installed digest is used only if its
// stored provenance passes spec.verify, as a download's must: a
// provenance file changed on disk (or gone, under mode Always) is a
// VerificationFailed error, not a package that keeps running.
func TestCachedProvenanceIsVerifiedOffline(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	archivePath := filepath.Join(out, "execsnoop-1.0.0.tgz")
	ring := sign(t, archivePath, "signer")
	ns := env.Namespace(t)
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keys", Namespace: ns},
		Data: map[string][]byte{"pubring.gpg": ring}}); err != nil {
		t.Fatal(err)
	}
	// A provenance over the same archive by a key the keyring lacks.
	other := filepath.Join(t.TempDir(), "execsnoop-1.0.0.tgz")
	copyInto(t, filepath.Dir(other), archivePath)
	sign(t, other, "intruder")
	forged, err := os.ReadFile(other + ".prov")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		prov    []byte // the stored provenance, nil: removed
		offline bool
		want    string
	}{
		{"intact, offline", nil, true, ""},
		{"forged, offline", forged, true, "provenance verification failed"},
		{"missing, offline", []byte{}, true, "no provenance file"},
		{"forged, cached while online", forged, false, "provenance verification failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.FileServer(http.Dir(out)))
			name := createRepo(t, v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true,
				Verify: &v1alpha1.Verification{Mode: v1alpha1.VerifyAlways, KeyringSecretRef: &v1alpha1.SecretReference{Name: "keys"}}})
			cache := t.TempDir()
			gp := gadgetPackage(name, "", "")
			d, err := newFetcher(t, cache, ns).Download(ctx, gp)
			if err != nil || !d.Verified {
				t.Fatalf("first download: %+v, %v", d, err)
			}
			gp.Status.Version, gp.Status.Digest = d.Version, d.Digest
			st, err := store.New(cache, archive.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case len(tt.prov) > 0:
				if err := st.PutProvenance(d.Digest, tt.prov); err != nil {
					t.Fatal(err)
				}
			case tt.prov != nil:
				if err := os.Remove(filepath.Join(cache, "archives", d.Digest+".tgz.prov")); err != nil {
					t.Fatal(err)
				}
			}
			if tt.offline {
				srv.Close()
			} else {
				defer srv.Close()
			}

			d, err = newFetcher(t, cache, ns).Download(ctx, gp)
			if tt.want == "" {
				if err != nil || !d.Offline || !d.Verified {
					t.Fatalf("offline with an intact provenance: %+v, %v; want the verified stored archive", d, err)
				}
				return
			}
			if fetch.ReasonOf(err, "") != v1alpha1.ReasonVerifyFailed || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "PackageRepository "+name) {
				t.Fatalf("err = %v (reason %q), want %s naming the repository and %q", err, fetch.ReasonOf(err, ""), v1alpha1.ReasonVerifyFailed, tt.want)
			}
		})
	}
}

// TestRefusedRepositoryFailsItsPackages: a package from a repository the
// policy refuses fails with the refusal's reason and message, naming the
// repository and the field, and nothing is sent; a package from another
// repository installs with the same Fetcher.
func TestRefusedRepositoryFailsItsPackages(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	allowed, tenant := env.Namespace(t), env.Namespace(t)
	creds := map[string][]byte{"username": []byte("alice"), "password": []byte("s3cret")}
	for _, ns := range []string{allowed, tenant} {
		if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, Data: creds}); err != nil {
			t.Fatal(err)
		}
	}
	var requests atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.FileServer(http.Dir(out)).ServeHTTP(w, r)
	})
	srv, tls := httptest.NewServer(h), httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(tls.Close)
	f := newFetcher(t, t.TempDir(), allowed)

	tests := []struct {
		name   string
		spec   v1alpha1.PackageRepositorySpec
		reason string
		want   string
	}{
		{"secret of another namespace", v1alpha1.PackageRepositorySpec{URL: tls.URL, SecretRef: &v1alpha1.SecretReference{Name: "creds", Namespace: tenant}},
			repoaccess.ReasonSecretNamespaceNotAllowed, `spec.secretRef.namespace is "` + tenant + `"`},
		{"http without insecure", v1alpha1.PackageRepositorySpec{URL: srv.URL},
			repoaccess.ReasonInsecureNotAllowed, "spec.insecure: true"},
		{"credentials over http", v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true, SecretRef: &v1alpha1.SecretReference{Name: "creds"}},
			repoaccess.ReasonCredentialsOverPlainHTTP, "spec.secretRef: credentials are never sent over plain HTTP"},
		{"file repository", v1alpha1.PackageRepositorySpec{URL: "file://" + out}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := createRepo(t, tt.spec)
			d, err := f.Download(ctx, gadgetPackage(name, "", ""))
			if tt.reason == "" {
				if err != nil || d.Version != "1.0.0" {
					t.Fatalf("download %+v, %v", d, err)
				}
				return
			}
			if fetch.ReasonOf(err, "") != tt.reason || !strings.Contains(err.Error(), "PackageRepository "+name) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (reason %q), want %s naming the repository and %q", err, fetch.ReasonOf(err, ""), tt.reason, tt.want)
			}
		})
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the refused repositories' servers got %d requests, want none", n)
	}
}
