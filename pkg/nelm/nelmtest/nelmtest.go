package nelmtest

import (
	"strings"
	"testing"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmrelease "helm.sh/helm/v3/pkg/release"
	helmreleaseutil "helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// HelmConfig returns a Helm action configuration for releases in ns with
// Secret storage, as `helm --namespace ns` has.
func HelmConfig(t testing.TB, cfg *rest.Config, ns string) *helmaction.Configuration {
	t.Helper()
	g, err := nelm.NewRESTClientGetter(cfg, ns, 50, 100)
	if err != nil {
		t.Fatal(err)
	}
	c := new(helmaction.Configuration)
	if err := c.Init(g, ns, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	return c
}

// History returns the revisions of release name in ns, oldest first; none
// when there is no such release.
func History(t testing.TB, cfg *rest.Config, ns, name string) []*helmrelease.Release {
	t.Helper()
	h, err := HelmConfig(t, cfg, ns).Releases.History(name)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatalf("history of release %s/%s: %v", ns, name, err)
	}
	helmreleaseutil.SortByRevision(h)
	return h
}
