package nelm_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

func TestRESTClientGetter(t *testing.T) {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 1, 2
	var requests atomic.Int64
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests.Add(1)
			return rt.RoundTrip(r)
		})
	})
	g, err := nelm.NewRESTClientGetter(cfg, "ns", 7, 9)
	if err != nil {
		t.Fatal(err)
	}

	rc, err := g.ToRESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rc.QPS != 7 || rc.Burst != 9 {
		t.Errorf("ToRESTConfig QPS/Burst = %v/%d, want 7/9", rc.QPS, rc.Burst)
	}
	if cfg.QPS != 1 || cfg.Burst != 2 {
		t.Errorf("the caller's rest.Config changed to QPS/Burst %v/%d", cfg.QPS, cfg.Burst)
	}
	rc.QPS = 100
	if again, _ := g.ToRESTConfig(); again.QPS != 7 {
		t.Errorf("ToRESTConfig hands out its own config: QPS %v after a caller changed its copy", again.QPS)
	}

	d1, err := g.ToDiscoveryClient()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := g.ToDiscoveryClient()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Error("ToDiscoveryClient returned two instances; want one persistent cached client")
	}
	if v, err := d1.ServerVersion(); err != nil || v.GitVersion == "" {
		t.Errorf("discovery of the real server: %v, %v", v, err)
	}

	// Persistent mapper: once a kind is mapped, mapping it again through a
	// mapper from another ToRESTMapper call asks the server nothing.
	m1, err := g.ToRESTMapper()
	if err != nil {
		t.Fatal(err)
	}
	mapping, err := m1.RESTMapping(schema.GroupKind{Kind: "ConfigMap"}, "v1")
	if err != nil || mapping.Resource.Resource != "configmaps" {
		t.Fatalf("mapping of ConfigMap = %+v, %v", mapping, err)
	}
	before := requests.Load()
	m2, err := g.ToRESTMapper()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.RESTMapping(schema.GroupKind{Kind: "ConfigMap"}, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d2.ServerGroupsAndResources(); err != nil {
		t.Fatal(err)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("a second ToRESTMapper and ToDiscoveryClient made %d request(s) to the server; want 0 (persistent cache)", n)
	}

	ns, explicit, err := g.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns != "ns" || !explicit {
		t.Errorf("ToRawKubeConfigLoader().Namespace() = %q, %v, %v; want \"ns\", true, nil", ns, explicit, err)
	}
	lc, err := g.ToRawKubeConfigLoader().ClientConfig()
	if err != nil || lc.QPS != 7 || lc.Burst != 9 || lc.Host != env.Config.Host {
		t.Errorf("the loader's ClientConfig = %+v, %v; want the getter's config", lc, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
