package nelm

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
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

// getter is the RESTClientGetter handed to Helm for one namespace.
type getter struct {
	access    *clusterAccess
	namespace string
}

func (g getter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.access.config), nil }

func (g getter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.access.discovery, nil
}

func (g getter) ToRESTMapper() (meta.RESTMapper, error) { return g.access.mapper, nil }

func (g getter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
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
