package packagetest

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	helmregistry "helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo/repotest"
)

// OCIRegistry starts Helm's test registry (distribution, in memory, basic
// auth, plain HTTP) on loopback, pushes every archive in repoDir to
// <host>/gadgets/<name>:<version> and returns the oci:// URL and the
// credentials. The registry stops when the test ends.
func OCIRegistry(t testing.TB, repoDir string) (url, user, pass string) {
	t.Helper()
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatal("OCIRegistry needs a *testing.T")
	}
	srv, err := repotest.NewOCIServer(tt, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("registry: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	client, err := helmregistry.NewClient(
		helmregistry.ClientOptBasicAuth(srv.TestUsername, srv.TestPassword),
		helmregistry.ClientOptPlainHTTP(),
		helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "config.json")),
	)
	if err != nil {
		t.Fatal(err)
	}
	archives, _ := filepath.Glob(filepath.Join(repoDir, "*.tgz"))
	for _, a := range archives {
		PushOCI(t, client, srv.RegistryURL+"/gadgets", a)
	}
	return "oci://" + srv.RegistryURL + "/gadgets", srv.TestUsername, srv.TestPassword
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
	for try := 0; try < 50; try++ { // the registry starts in the background
		if _, pushErr = client.Push(data, ref); pushErr == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("push %s: %v", ref, pushErr)
}
