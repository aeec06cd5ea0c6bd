package testenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// sharedEnv is a second test binary's view of env's control plane, as
// hack/test-controlplane.sh gives it: GADGETPM_TEST_KUBECONFIG set.
func sharedEnv(t *testing.T) *testenv.Env {
	t.Helper()
	t.Setenv(testenv.SharedKubeconfigEnv, env.WriteKubeconfig(t))
	e, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stop a shared control plane's Env: %v", err)
		}
	})
	return e
}

// Two binaries on one control plane: each labels the gadgetpm objects it
// creates with a shard of its own and names its namespaces and
// repositories after it, and a cache built with its CacheOptions (as
// its operators' are, through --watch-label-selector) holds its own
// shard's objects only. Other kinds are left as they are.
func TestSharedControlPlaneShards(t *testing.T) {
	a, b := sharedEnv(t), sharedEnv(t)
	if a.Shard == "" || a.Shard == b.Shard {
		t.Fatalf("shards %q and %q: want two distinct ones", a.Shard, b.Shard)
	}
	if got, want := a.WatchLabelSelector(), apis.ShardKey+"="+a.Shard; got != want {
		t.Errorf("WatchLabelSelector %q, want %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nsA, nsB := a.Namespace(t), b.Namespace(t)
	if !strings.HasPrefix(nsA, a.Shard+"-") || len(nsA) > 40+1+4 {
		t.Errorf("namespace %q: want it to start with %q and be no longer than without a shard", nsA, a.Shard+"-")
	}
	repo := a.Repository(t, "shared", gadgetpmv1alpha1.PackageRepositorySpec{URL: "file:///nonexistent"})
	if !strings.HasPrefix(repo, "shared-"+a.Shard+"-") {
		t.Errorf("PackageRepository %q: want it to start with %q", repo, "shared-"+a.Shard+"-")
	}
	for _, c := range []struct {
		e  *testenv.Env
		ns string
	}{{a, nsA}, {b, nsB}} {
		gp := &gadgetpmv1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "p"},
			Spec: gadgetpmv1alpha1.GadgetPackageSpec{Repository: repo, Package: "p"}}
		if err := c.e.Client.Create(ctx, gp); err != nil {
			t.Fatal(err)
		}
		if got := gp.Labels[apis.ShardKey]; got != c.e.Shard {
			t.Errorf("GadgetPackage %s/p labelled %q, want %q", c.ns, got, c.e.Shard)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "c"}}
		if err := c.e.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		if len(cm.Labels) > 0 {
			t.Errorf("ConfigMap %s/c labelled %v: only gadgetpm's kinds are", c.ns, cm.Labels)
		}
	}

	cc, err := cache.New(a.Config, a.CacheOptions(cache.Options{Scheme: a.Scheme}))
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cc.Start(cctx) }()
	t.Cleanup(func() { stop(); <-done })
	if !cc.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not sync")
	}
	// created before the cache started: a synced cache holds them
	var gps gadgetpmv1alpha1.GadgetPackageList
	if err := cc.List(ctx, &gps); err != nil {
		t.Fatal(err)
	}
	if len(gps.Items) != 1 || gps.Items[0].Namespace != nsA {
		t.Errorf("the shard's cache holds %d GadgetPackages (%v), want its own one in %s", len(gps.Items), gps.Items, nsA)
	}
	var cms corev1.ConfigMapList
	if err := cc.List(ctx, &cms); err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, cm := range cms.Items {
		if cm.Name == "c" && (cm.Namespace == nsA || cm.Namespace == nsB) {
			seen++
		}
	}
	if seen != 2 {
		t.Errorf("the cache holds %d of the two shards' ConfigMaps, want both: other kinds are not sharded", seen)
	}
}
