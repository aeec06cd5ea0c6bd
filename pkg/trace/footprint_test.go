package trace_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// TestNodeDownloadsTheInstalledDigest: a node whose store lacks a package
// downloads the archive of the digest the package's status records, even
// when the repository already offers a newer version matching
// spec.version that the cluster role has not installed yet: the node's
// Traces run what the cluster installed, during a rollout too.
func TestNodeDownloadsTheInstalledDigest(t *testing.T) {
	requireRoot(t)
	ns := env.Namespace(t)
	repoDir := t.TempDir()
	installed := packBundled(t, "trace-exec")
	if err := os.WriteFile(filepath.Join(repoDir, "trace-exec-0.1.0.tgz"), installed.data, 0o644); err != nil {
		t.Fatal(err)
	}
	// 0.2.0: the same chart under a newer version, so another digest
	src := filepath.Join(t.TempDir(), "trace-exec")
	if err := os.CopyFS(src, os.DirFS(filepath.Join(env.RepoRoot, "charts", "packages", "trace-exec"))); err != nil {
		t.Fatal(err)
	}
	chart, err := os.ReadFile(filepath.Join(src, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "Chart.yaml"), []byte(strings.Replace(string(chart), "version: 0.1.0", "version: 0.2.0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chartrepo.Pack(src, "trace-exec", filepath.Join(repoDir, "trace-exec-0.2.0.tgz")); err != nil {
		t.Fatal(err)
	}
	packagetest.WriteIndex(t, repoDir,
		packagetest.IndexEntry{Name: "trace-exec", Version: "0.2.0", URL: "trace-exec-0.2.0.tgz"},
		packagetest.IndexEntry{Name: "trace-exec", Version: "0.1.0", URL: "trace-exec-0.1.0.tgz"})
	srv := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	t.Cleanup(srv.Close)

	ctx := context.Background()
	pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: "rollout-" + ns}, Spec: v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true}}
	if err := env.Client.Create(ctx, pr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trace-exec"},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: pr.Name, Package: "trace-exec", Version: "*"},
	}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status = v1alpha1.GadgetPackageStatus{Phase: v1alpha1.PhaseRunning, Enabled: true, Version: "0.1.0", Digest: installed.digest}
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}

	n := startNode(t, uniqueNode(t), nodeOptions{emptyStore: true})
	tr := newTrace(t, ns, "rollout", n.name, "trace-exec")
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(tr), 60*time.Second, "operation handled", operationDone)
	if got.Status.OperationError != "" || got.Status.State != gadgetv1alpha1.TraceStarted {
		t.Fatalf("Trace not Started from the downloaded package: state %q, operationError %q", got.Status.State, got.Status.OperationError)
	}
	if _, ok := n.store.Archive(installed.digest); !ok {
		t.Errorf("the node's store lacks the installed archive sha256:%s", installed.digest)
	}
	annotate(t, key(tr), gadgetv1alpha1.OperationStop)
	waitTrace(t, key(tr), 30*time.Second, "stopped", stateIs(gadgetv1alpha1.TraceStopped))
}

// TestCacheOptionsKeepWhatANodeReads: the node role's cache holds
// GadgetPackages without what a node never reads (managedFields, settings,
// catalog, conditions), and keeps every field resolving a Trace's gadget
// and fetching its archive read.
func TestCacheOptionsKeepWhatANodeReads(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "slim"},
		Spec: v1alpha1.GadgetPackageSpec{Repository: "bundled", Package: "trace-exec", Version: "*",
			Settings: &apiextensionsv1.JSON{Raw: []byte(`{"maxRows": 5}`)}},
	}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status = v1alpha1.GadgetPackageStatus{Phase: v1alpha1.PhaseRunning, Enabled: true, Version: "0.1.0", Digest: strings.Repeat("a", 64),
		Catalog:    &v1alpha1.Catalog{Params: []v1alpha1.CatalogParam{{Key: "pid"}}},
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Running", LastTransitionTime: metav1.Now()}}}
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Cache: env.CacheOptions(trace.CacheOptions()),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	cached := eventually.Value(t, 30*time.Second, "GadgetPackage in the cache", func() (*v1alpha1.GadgetPackage, error) {
		var got v1alpha1.GadgetPackage
		err := mgr.GetClient().Get(ctx, client.ObjectKeyFromObject(gp), &got)
		return &got, err
	})
	if len(cached.ManagedFields) != 0 || cached.Spec.Settings != nil || cached.Status.Catalog != nil || len(cached.Status.Conditions) != 0 {
		t.Errorf("cached GadgetPackage keeps what a node never reads: managedFields %d, settings %v, catalog %v, conditions %d",
			len(cached.ManagedFields), cached.Spec.Settings, cached.Status.Catalog, len(cached.Status.Conditions))
	}
	want := fmt.Sprintf("%s %s %s %v %s %s", gp.Spec.Repository, gp.Spec.Package, gp.Status.Phase, gp.Status.Enabled, gp.Status.Version, gp.Status.Digest)
	if got := fmt.Sprintf("%s %s %s %v %s %s", cached.Spec.Repository, cached.Spec.Package, cached.Status.Phase, cached.Status.Enabled, cached.Status.Version, cached.Status.Digest); got != want {
		t.Errorf("cached GadgetPackage reads %q, want %q", got, want)
	}
}
