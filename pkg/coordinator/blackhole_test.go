package coordinator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagerepository"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// TestBlackholedRepositoryFailsOnlyItsPackage: beside a repository that
// accepts connections and never answers, a good repository syncs and a
// package from it installs and runs while the blackholed repository's
// requests still hang; those end at its spec.timeout, failing its own
// repository (reason Timeout) and its package, naming the URL and
// spec.timeout.
func TestBlackholedRepositoryFailsOnlyItsPackage(t *testing.T) {
	const timeout = 30 * time.Second
	ns := env.Namespace(t)
	bh := packagetest.NewBlackhole(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "fine"}))))
	t.Cleanup(srv.Close)
	hung, good := "hung-"+ns, "good-"+ns
	url := "http://" + bh.Addr
	for _, pr := range []*v1alpha1.PackageRepository{
		{ObjectMeta: metav1.ObjectMeta{Name: hung}, Spec: v1alpha1.PackageRepositorySpec{URL: url, Insecure: true, Timeout: metav1.Duration{Duration: timeout}}},
		{ObjectMeta: metav1.ObjectMeta{Name: good}, Spec: v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true}},
	} {
		if err := env.Client.Create(context.Background(), pr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
	}
	start(t)
	createPackage(t, ns, "stuck", hung)
	eventually.True(t, 30*time.Second, "the sync and the package's download to reach the blackholed repository", func() bool { return len(bh.Conns()) >= 2 })

	createPackage(t, ns, "fine", good)
	waitFor(t, ns, "fine", "Running", running)
	for i, c := range bh.Conns() {
		if at := c.Closed(); !at.IsZero() {
			t.Errorf("request %d to the blackholed repository ended (%v after it began) before the good package ran", i, at.Sub(c.Accepted))
		}
	}

	want := []string{url, "timeout 30s (spec.timeout)"}
	gp := waitFor(t, ns, "stuck", "failed by the timeout", func(gp *v1alpha1.GadgetPackage) bool {
		c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "spec.timeout")
	})
	if c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady); !strings.Contains(c.Message, want[0]) {
		t.Errorf("Ready of stuck = %+v; want a message naming %s", c, want[0])
	}
	var pr v1alpha1.PackageRepository
	eventually.True(t, 30*time.Second, "PackageRepository "+hung+" Ready=False Timeout", func() bool {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: hung}, &pr); err != nil {
			return false
		}
		c := meta.FindStatusCondition(pr.Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Reason == packagerepository.ReasonTimeout && strings.Contains(c.Message, want[0]) && strings.Contains(c.Message, want[1])
	})
	// The good package is untouched.
	waitFor(t, ns, "fine", "still Running", running)
}
