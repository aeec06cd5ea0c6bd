package testenv_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// Helm checks charts' kubeVersion against the server's reported version, so
// the API server must report a real, stamped release.
func TestServerReportsStampedVersion(t *testing.T) {
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.Major != "1" || v.Minor == "" || v.Minor == "0" || v.GitVersion == "v0.0.0-master+$Format:%H$" || v.GitVersion[:2] != "v1" {
		t.Fatalf("server version %+v is not a stamped release", v)
	}
}

func TestNamespaceIsUsable(t *testing.T) {
	ns := env.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cm := &corev1.ConfigMap{}
	cm.Name, cm.Namespace = "probe", ns
	if err := env.Client.Create(ctx, cm); err != nil {
		t.Fatalf("create in %s: %v", ns, err)
	}
}

func TestMissingAssetsNameTheCommand(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	_, err := testenv.Start()
	if !errors.Is(err, testenv.ErrNoAssets) {
		t.Fatalf("Start with empty assets: %v, want ErrNoAssets", err)
	}
	if got := err.Error(); !contains(got, "hack/setup-envtest.sh") {
		t.Fatalf("error %q does not name hack/setup-envtest.sh", got)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
