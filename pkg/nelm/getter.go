package nelm

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
)

// Discovery is the REST mapper and cached discovery client Helm's
// operations use. The mapper must refresh itself when a lookup misses, so
// that kinds from CRDs created after start are mapped; Reset, when it has
// one, forgets both caches. restmapping.Mapper is one; the operator passes
// the process's shared one.
type Discovery interface {
	meta.RESTMapper
	Discovery() discovery.CachedDiscoveryInterface
}

// clusterAccess is what every Helm operation of a Service shares: one
// rest.Config with the service's own QPS and burst, and one discovery
// cache and REST mapper, so an operation does not rediscover the whole API.
type clusterAccess struct {
	config    *rest.Config
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

// newClusterAccess copies cfg with qps and burst; d nil makes a mapper of
// its own over the copy.
func newClusterAccess(cfg *rest.Config, qps float32, burst int, d Discovery) (*clusterAccess, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = qps, burst
	if d == nil {
		m, err := restmapping.New(c)
		if err != nil {
			return nil, err
		}
		d = m
	}
	return &clusterAccess{config: c, discovery: d.Discovery(), mapper: d}, nil
}

// RESTClientGetter is what Helm's action.Configuration needs to reach the
// cluster for one release namespace: the rest.Config, a persistent cached
// discovery client and REST mapper, and a kubeconfig loader whose namespace
// is the release's. The Service makes one per operation over its
// Options.Discovery (the process's shared one); NewRESTClientGetter is for
// callers driving the Helm SDK themselves.
type RESTClientGetter struct {
	access    *clusterAccess
	namespace string
}

var _ genericclioptions.RESTClientGetter = (*RESTClientGetter)(nil)

// NewRESTClientGetter returns a RESTClientGetter over a copy of cfg with
// its own qps and burst and a discovery cache of its own, for releases in
// namespace.
func NewRESTClientGetter(cfg *rest.Config, namespace string, qps float32, burst int) (*RESTClientGetter, error) {
	access, err := newClusterAccess(cfg, qps, burst, nil)
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
