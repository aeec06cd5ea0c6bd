package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// TestRemovePackageStopsItsTraces runs the coordinator and a node's Trace
// controller in one manager, as process.Run does: a Trace runs the
// package's gadget; deleting the package stops the Trace with the reason,
// unloads the gadget, empties the subscriptions, and only then is the
// package uninstalled.
func TestRemovePackageStopsItsTraces(t *testing.T) {
	testroot.Require(t, "loading eBPF")
	ns := env.Namespace(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	if err := os.CopyFS(filepath.Join(src, "trace-exec"), os.DirFS(filepath.Join(env.RepoRoot, "charts", "packages", "trace-exec"))); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(t.TempDir(), "repo")
	if _, err := chartrepo.Build(ctx, src, repoDir, chartrepo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	createRepo(t, ns+"-repo", repoDir)

	node := ns + "-node"
	if err := env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      env.CacheOptions(cache.Options{}),
		Controller: config.Controller{SkipNameValidation: &skipNameValidation}})
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	st, fetcher, err := coordinator.PackageStore(dataDir, mgr.GetAPIReader(), repoaccess.Policy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	op, err := coordinator.New(coordinator.Options{
		Config: env.Config, Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), DataDir: dataDir, Fetcher: fetcher,
		StopGrace: 2 * time.Second, HelmTimeout: 30 * time.Second, UnsubscribeTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	tc, err := trace.New(trace.Options{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: env.Scheme, NodeName: node,
		DataDir: dataDir, Store: st, Fetcher: fetcher, NodeCheck: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	createPackage(t, ns, "trace-exec", ns+"-repo")
	waitFor(t, ns, "trace-exec", "Running", running)
	tr := &gadgetv1alpha1.Trace{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exec",
			Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: gadgetv1alpha1.OperationStart}},
		Spec: gadgetv1alpha1.TraceSpec{Node: node, Gadget: "trace-exec"},
	}
	if err := env.Client.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	waitTraceState(t, tr, gadgetv1alpha1.TraceStarted)
	waitFor(t, ns, "trace-exec", "subscribed", func(gp *v1alpha1.GadgetPackage) bool { return len(gp.Status.Subscriptions) == 1 })
	// The dump shows the loaded gadget, the Trace it serves and its output.
	if g := debugserver.WithNodeRuns(op, tc.Runs).Dump().Gadgets; len(g) != 1 || g[0].Package != ns+"/trace-exec" ||
		len(g[0].Traces) != 1 || g[0].Traces[0] != ns+"/exec" || g[0].Outputs[ns+"/exec"].Mode != gadgetv1alpha1.OutputStatus {
		t.Fatalf("dump gadgets = %+v, want one run of %s/trace-exec serving %s/exec into its status", g, ns, ns)
	}

	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trace-exec"}}
	if err := env.Client.Delete(ctx, gp); err != nil {
		t.Fatal(err)
	}
	got := waitTraceState(t, tr, gadgetv1alpha1.TraceStopped)
	if want := "package " + ns + "/trace-exec is being removed"; !strings.Contains(got.Status.OperationError, want) {
		t.Fatalf("operationError %q, want %q", got.Status.OperationError, want)
	}
	waitGone(t, ns, "trace-exec")
	if runs := tc.Runs(); len(runs) != 0 {
		t.Fatalf("the gadget is still loaded: %+v", runs)
	}
}

func waitTraceState(t *testing.T, tr *gadgetv1alpha1.Trace, state gadgetv1alpha1.TraceState) *gadgetv1alpha1.Trace {
	t.Helper()
	return eventually.Value(t, 90*time.Second, fmt.Sprintf("trace %s to be %s", tr.Name, state), func() (*gadgetv1alpha1.Trace, error) {
		var got gadgetv1alpha1.Trace
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(tr), &got)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if err == nil && got.Status.State == state && got.Annotations[gadgetv1alpha1.OperationAnnotation] == "" {
			return &got, nil
		}
		return nil, fmt.Errorf("status %+v", got.Status)
	})
}
