package nelm

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// clusterAccess is what every Helm operation of a Service shares: one
// rest.Config with the service's own QPS and burst, one discovery cache and
// one REST mapper, so an operation does not rediscover the whole API.
type clusterAccess struct {
	config    *rest.Config
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

func newClusterAccess(cfg *rest.Config, qps float32, burst int) (*clusterAccess, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = qps, burst
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(dc)
	// The deferred mapper resets the discovery cache when a kind is not
	// found, so kinds from CRDs installed after start are still mapped.
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, nil)
	return &clusterAccess{config: c, discovery: cached, mapper: mapper}, nil
}

// RESTClientGetter is what Helm's action.Configuration needs to reach the
// cluster for one release namespace: the rest.Config, a persistent cached
// discovery client and REST mapper, and a kubeconfig loader whose namespace
// is the release's. The Service makes one per operation over shared
// discovery; NewRESTClientGetter is for callers driving the Helm SDK
// themselves.
type RESTClientGetter struct {
	access    *clusterAccess
	namespace string
}

var _ genericclioptions.RESTClientGetter = (*RESTClientGetter)(nil)

// NewRESTClientGetter returns a RESTClientGetter over a copy of cfg with
// its own qps and burst, for releases in namespace.
func NewRESTClientGetter(cfg *rest.Config, namespace string, qps float32, burst int) (*RESTClientGetter, error) {
	access, err := newClusterAccess(cfg, qps, burst)
	if err != nil {
		return nil, err
	}
	return &RESTClientGetter{access: access, namespace: namespace}, nil
}

// ToRESTConfig returns a copy of the rest.Config.
func (g *RESTClientGetter) ToRESTConfig() (*rest.Config, error) {
	return rest.CopyConfig(g.access.config), nil
}

// ToDiscoveryClient returns the shared cached discovery client.
func (g *RESTClientGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.access.discovery, nil
}

// ToRESTMapper returns the shared REST mapper.
func (g *RESTClientGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.access.mapper, nil }

// ToRawKubeConfigLoader returns a loader whose namespace is the release's.
func (g *RESTClientGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return namespacedConfig{config: g.access.config, namespace: g.namespace}
}

// namespacedConfig is a clientcmd.ClientConfig over an in-memory rest.Config
// whose namespace is the release's, so Helm's kube client defaults to it.
type namespacedConfig struct {
	config    *rest.Config
	namespace string
}

func (c namespacedConfig) RawConfig() (clientcmdapi.Config, error) {
	return clientcmdapi.Config{}, nil
}

func (c namespacedConfig) ClientConfig() (*rest.Config, error) { return rest.CopyConfig(c.config), nil }

func (c namespacedConfig) Namespace() (string, bool, error) { return c.namespace, true, nil }

func (c namespacedConfig) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}
