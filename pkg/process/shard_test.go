package process_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/process"
)

// An instance started with --watch-label-selector reconciles the
// PackageRepositories of its shard and leaves another shard's alone, so
// that several instances share one cluster.
func TestWatchLabelSelectorLimitsTheShard(t *testing.T) {
	ns := env.Namespace(t)
	repo := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "p"})
	ctx := context.Background()
	create := func(name, shard string) *gadgetpmv1alpha1.PackageRepository {
		pr := &gadgetpmv1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{apis.ShardKey: shard}},
			Spec: gadgetpmv1alpha1.PackageRepositorySpec{URL: "file://" + repo, Interval: metav1.Duration{Duration: time.Hour}}}
		if err := env.Client.Create(ctx, pr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(ctx, pr) })
		return pr
	}
	// the other shard's first: had it been queued, it would sync first
	other := create(ns+"-other", ns+"-other")
	mine := create(ns+"-mine", ns+"-mine")

	opts := options(t, ns, process.RoleCluster)
	opts.NodeName = ""
	opts.WatchLabelSelector = apis.ShardKey + "=" + ns + "-mine"
	logTo(t, &opts)
	start(t, opts)
	eventually.NoError(t, 60*time.Second, "the shard's PackageRepository to sync", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(mine), mine); err != nil {
			return err
		}
		if mine.Status.LastSyncTime == nil {
			return fmt.Errorf("status %+v", mine.Status)
		}
		return nil
	})
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(other), other); err != nil {
		t.Fatal(err)
	}
	if other.Status.LastSyncTime != nil || len(other.Status.Conditions) > 0 {
		t.Errorf("the other shard's PackageRepository was reconciled: status %+v", other.Status)
	}
}

// A selector that does not parse stops the process at once, naming the
// flag, the value and what it expects.
func TestWatchLabelSelectorRefusesABadSelector(t *testing.T) {
	ns := env.Namespace(t)
	opts := options(t, ns, process.RoleCluster)
	opts.NodeName = ""
	opts.WatchLabelSelector = "a=b=c"
	logTo(t, &opts)
	p := start(t, opts)
	err, ok := p.wait(30 * time.Second)
	if !ok {
		t.Fatal("the process still runs with --watch-label-selector a=b=c")
	}
	for _, want := range []string{"--watch-label-selector", `"a=b=c"`, apis.ShardKey + "=shard1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
