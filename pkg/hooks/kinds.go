package hooks

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// NewRESTMapper returns a REST mapper for ResolveKinds that knows the API
// server's plurals and short names and refreshes its discovery cache when a
// kind is not found, so a CRD created after the first lookup is found on the
// next.
func NewRESTMapper(cfg *rest.Config) (meta.RESTMapper, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(dc)
	return restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, nil), nil
}

// ResolveKinds checks every kubernetes binding's kind against mapper and
// rewrites its Monitor's APIVersion and Kind to the canonical ones (Kind as
// the server spells it, e.g. "pods", "PO" and "pod" all become "Pod").
// A kind is matched case-insensitively as a kind, a plural, a singular or a
// short name (short names need a mapper from NewRESTMapper or another
// shortcut-expanding mapper). hook names the hook in errors.
func (c *Config) ResolveKinds(hook string, mapper meta.RESTMapper) error {
	for i := range c.Kubernetes {
		b := &c.Kubernetes[i]
		gvk, err := resolveKind(mapper, b.Monitor.APIVersion, b.Monitor.Kind)
		if err != nil {
			return &ConfigError{Hook: hook, Binding: fmt.Sprintf("kubernetes[%d] %q", i, b.Name), Field: "kind", Msg: err.Error()}
		}
		b.Monitor.APIVersion, b.Monitor.Kind = gvk.GroupVersion().String(), gvk.Kind
	}
	return nil
}

func resolveKind(mapper meta.RESTMapper, apiVersion, kind string) (schema.GroupVersionKind, error) {
	if mapper == nil {
		return schema.GroupVersionKind{}, fmt.Errorf("no REST mapper to resolve kind %q", kind)
	}
	var gv schema.GroupVersion
	if apiVersion != "" {
		var err error
		if gv, err = schema.ParseGroupVersion(apiVersion); err != nil {
			return schema.GroupVersionKind{}, fmt.Errorf("apiVersion %q: %w", apiVersion, err)
		}
	}
	if gvk, ok := lookupKind(mapper, gv, kind); ok {
		return gvk, nil
	}
	// A cached mapper may predate the kind's CRD: refresh discovery once.
	if r, ok := mapper.(meta.ResettableRESTMapper); ok {
		r.Reset()
		if gvk, ok := lookupKind(mapper, gv, kind); ok {
			return gvk, nil
		}
	}
	where := "any served API group"
	if apiVersion != "" {
		where = apiVersion
	}
	return schema.GroupVersionKind{}, fmt.Errorf("unknown kind %q in %s; expected a kind, plural or short name the API server serves (kubectl api-resources lists them)", kind, where)
}

// lookupKind tries kind as a resource name (plural, singular or short name,
// any case), then as a kind; the result is always the server's spelling.
func lookupKind(mapper meta.RESTMapper, gv schema.GroupVersion, kind string) (schema.GroupVersionKind, bool) {
	if gvks, err := mapper.KindsFor(gv.WithResource(strings.ToLower(kind))); err == nil && len(gvks) > 0 {
		return gvks[0], true
	}
	var versions []string
	if gv.Version != "" {
		versions = []string{gv.Version}
	}
	m, err := mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: kind}, versions...)
	if err != nil {
		return schema.GroupVersionKind{}, false
	}
	gvk, err := mapper.KindFor(m.Resource)
	if err != nil {
		return schema.GroupVersionKind{}, false
	}
	return gvk, true
}
