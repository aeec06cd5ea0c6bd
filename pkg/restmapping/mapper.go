package restmapping

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Mapper is a REST mapper that knows the API server's plurals, singular
// names and short names and refreshes its discovery cache when a lookup
// misses. It also lends its cached discovery client (Discovery) and tells
// which versions of an API group are served (ServedVersions). It is safe
// for concurrent use.
type Mapper struct {
	cached discovery.CachedDiscoveryInterface
	// direct is uncached: ServedVersions asks it after a lookup missed.
	direct   discovery.DiscoveryInterface
	deferred *restmapper.DeferredDiscoveryRESTMapper
	// expander resolves short names and categories over deferred.
	expander meta.RESTMapper
}

var (
	_ meta.RESTMapper           = (*Mapper)(nil)
	_ meta.ResettableRESTMapper = (*Mapper)(nil)
)

// New returns a Mapper whose discovery client is built from cfg. It
// contacts nothing until the first lookup.
func New(cfg *rest.Config) (*Mapper, error) {
	if cfg == nil {
		return nil, fmt.Errorf("create REST mapper: rest config is nil")
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create REST mapper: discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(dc)
	deferred := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	return &Mapper{
		cached:   cached,
		direct:   dc,
		deferred: deferred,
		expander: restmapper.NewShortcutExpander(deferred, cached, nil),
	}, nil
}

// Discovery returns the shared cached discovery client. Invalidating it
// alone leaves the mapper's kinds as they were; call Reset for both.
func (m *Mapper) Discovery() discovery.CachedDiscoveryInterface { return m.cached }

// Reset forgets the cached discovery information of the client and the
// mapper; the next lookup discovers the API again.
func (m *Mapper) Reset() { m.deferred.Reset() }

// ServedVersions returns the versions the API server serves group at,
// preferred first, and whether it serves the group at all. It asks the
// server, not the cache: it is for telling a group still to come (a CRD
// not created yet) apart from a wrong version after a lookup missed.
func (m *Mapper) ServedVersions(group string) ([]string, bool, error) {
	groups, err := m.direct.ServerGroups()
	if err != nil {
		return nil, false, fmt.Errorf("discover API groups: %w", err)
	}
	for _, g := range groups.Groups {
		if g.Name != group {
			continue
		}
		var out []string
		if p := g.PreferredVersion.Version; p != "" {
			out = append(out, p)
		}
		for _, v := range g.Versions {
			if !slices.Contains(out, v.Version) {
				out = append(out, v.Version)
			}
		}
		return out, true, nil
	}
	return nil, false, nil
}

// retry runs lookup; when it misses, it resets the cache and runs it once
// more, since the cache may predate the kind's CRD.
func retry[T any](m *Mapper, lookup func() (T, error)) (T, error) {
	v, err := lookup()
	if err == nil || !meta.IsNoMatchError(err) {
		return v, err
	}
	m.Reset()
	return lookup()
}

// KindFor implements meta.RESTMapper, refreshing on a miss.
func (m *Mapper) KindFor(resource schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	return retry(m, func() (schema.GroupVersionKind, error) { return m.expander.KindFor(resource) })
}

// KindsFor implements meta.RESTMapper, refreshing on a miss.
func (m *Mapper) KindsFor(resource schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	return retry(m, func() ([]schema.GroupVersionKind, error) { return m.expander.KindsFor(resource) })
}

// ResourceFor implements meta.RESTMapper, refreshing on a miss.
func (m *Mapper) ResourceFor(input schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	return retry(m, func() (schema.GroupVersionResource, error) { return m.expander.ResourceFor(input) })
}

// ResourcesFor implements meta.RESTMapper, refreshing on a miss.
func (m *Mapper) ResourcesFor(input schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	return retry(m, func() ([]schema.GroupVersionResource, error) { return m.expander.ResourcesFor(input) })
}

// RESTMapping implements meta.RESTMapper, refreshing on a miss.
func (m *Mapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	return retry(m, func() (*meta.RESTMapping, error) { return m.expander.RESTMapping(gk, versions...) })
}

// RESTMappings implements meta.RESTMapper, refreshing on a miss.
func (m *Mapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	return retry(m, func() ([]*meta.RESTMapping, error) { return m.expander.RESTMappings(gk, versions...) })
}

// ResourceSingularizer implements meta.RESTMapper, refreshing on a miss.
func (m *Mapper) ResourceSingularizer(resource string) (string, error) {
	return retry(m, func() (string, error) { return m.expander.ResourceSingularizer(resource) })
}
