package packagetest

import (
	"crypto/subtle"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	helmregistry "helm.sh/helm/v3/pkg/registry"
)

// Credentials OCIRegistry accepts.
const (
	OCIUsername = "gadgetpm"
	OCIPassword = "registry-secret"
)

// OCIRegistry starts an OCI registry (go-containerregistry's: in memory,
// plain HTTP, implementing the distribution spec's push, pull and tag
// listing) behind basic auth on loopback, pushes every archive in repoDir
// to <host>/gadgets/<name>:<version> and returns the oci:// URL and the
// credentials. The registry stops when the test ends.
func OCIRegistry(t testing.TB, repoDir string) (url, user, pass string) {
	t.Helper()
	url, _ = ociRegistry(t, repoDir, false)
	return url, OCIUsername, OCIPassword
}

// OCIRegistryTLS is OCIRegistry served over HTTPS; it also returns the PEM
// certificate to trust (a PackageRepository's spec.caBundle).
func OCIRegistryTLS(t testing.TB, repoDir string) (url, user, pass string, caPEM []byte) {
	t.Helper()
	url, caPEM = ociRegistry(t, repoDir, true)
	return url, OCIUsername, OCIPassword, caPEM
}

func ociRegistry(t testing.TB, repoDir string, withTLS bool) (string, []byte) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	opts := []helmregistry.ClientOption{
		helmregistry.ClientOptBasicAuth(OCIUsername, OCIPassword),
		helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "config.json")),
	}
	var srv *httptest.Server
	var caPEM []byte
	if withTLS {
		srv = httptest.NewTLSServer(basicAuth(reg, OCIUsername, OCIPassword))
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		opts = append(opts, helmregistry.ClientOptHTTPClient(srv.Client()))
	} else {
		srv = httptest.NewServer(basicAuth(reg, OCIUsername, OCIPassword))
		opts = append(opts, helmregistry.ClientOptPlainHTTP())
	}
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")

	client, err := helmregistry.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	archives, _ := filepath.Glob(filepath.Join(repoDir, "*.tgz"))
	for _, a := range archives {
		PushOCI(t, client, host+"/gadgets", a)
	}
	return "oci://" + host + "/gadgets", caPEM
}

// basicAuth answers requests without the credentials the way registries
// do: 401 with a Basic challenge, which OCI clients answer with
// credentials.
func basicAuth(next http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="gadgetpm-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// PushOCI pushes the archive "<name>-<version>.tgz" to base/<name>:<version>.
func PushOCI(t testing.TB, client *helmregistry.Client, base, archive string) {
	t.Helper()
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	stem := strings.TrimSuffix(filepath.Base(archive), ".tgz")
	i := strings.LastIndex(stem[:strings.Index(stem, ".")], "-")
	ref := base + "/" + stem[:i] + ":" + stem[i+1:]
	var pushErr error
	for try := 0; try < 50; try++ { // a registry may start in the background
		if _, pushErr = client.Push(data, ref); pushErr == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("push %s: %v", ref, pushErr)
}
