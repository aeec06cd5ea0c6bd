package hooks

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
)

// NewRESTMapper returns a REST mapper for ResolveKinds that knows the API
// server's plurals and short names and refreshes its discovery cache when a
// kind is not found, so a CRD created after the first lookup is found on the
// next. It can also tell ResolveKinds which versions of an API group are
// served, so that a kind whose group is not served at all (a CRD still to
// come) is told apart from a wrong version or a misspelled kind. The
// operator passes the process's shared restmapping.Mapper instead.
func NewRESTMapper(cfg *rest.Config) (meta.RESTMapper, error) {
	return restmapping.New(cfg)
}

// groupLister is a mapper that knows the served versions of API groups
// (restmapping.Mapper is one).
type groupLister interface {
	ServedVersions(group string) ([]string, bool, error)
}

// ResolveKinds checks every kubernetes binding's kind against mapper and
// rewrites its Monitor's APIVersion and Kind to the canonical ones (Kind as
// the server spells it, e.g. "pods", "PO" and "pod" all become "Pod").
// A kind is matched case-insensitively as a kind, a plural, a singular or a
// short name (short names need a mapper from NewRESTMapper or another
// shortcut-expanding mapper). hook names the hook in errors.
//
// Every kind the API server does not serve is an error naming the hook,
// the binding and the field: `kind` for a kind missing from a served group
// version, `apiVersion` for a group served at other versions only
// ("events.k8s.io/v1beta1 is not served; served versions of events.k8s.io:
// v1"). ResolveKindsLater accepts a kind whose group is not served at all.
func (c *Config) ResolveKinds(hook string, mapper meta.RESTMapper) error {
	return c.resolveKinds(hook, mapper, false)
}

// ResolveKindsLater is ResolveKinds, except that a binding whose apiVersion
// names an API group the API server does not serve at all is accepted as
// the hook wrote it, with KindNotServed saying so: its CRD may be created
// later (by the package's chart or by someone else), and the binding's
// monitor waits for it. Such a group is told apart only with a mapper from
// NewRESTMapper; with another mapper every unknown kind is an error.
func (c *Config) ResolveKindsLater(hook string, mapper meta.RESTMapper) error {
	return c.resolveKinds(hook, mapper, true)
}

func (c *Config) resolveKinds(hook string, mapper meta.RESTMapper, later bool) error {
	for i := range c.Kubernetes {
		b := &c.Kubernetes[i]
		b.KindNotServed = ""
		gvk, err := resolveKind(mapper, b.Monitor.APIVersion, b.Monitor.Kind)
		var ke *kindError
		if errors.As(err, &ke) && ke.groupNotServed && later {
			b.KindNotServed = ke.msg
			continue
		}
		if err != nil {
			field := "kind"
			if ke != nil {
				field = ke.field
			}
			return &ConfigError{Hook: hook, Binding: fmt.Sprintf("kubernetes[%d] %q", i, b.Name), Field: field, Msg: err.Error()}
		}
		b.Monitor.APIVersion, b.Monitor.Kind = gvk.GroupVersion().String(), gvk.Kind
	}
	return nil
}

// kindError is a kind the API server does not serve.
type kindError struct {
	// field is the binding's field to fix: kind or apiVersion.
	field string
	msg   string
	// groupNotServed: apiVersion names a group the server does not serve
	// at all.
	groupNotServed bool
}

func (e *kindError) Error() string { return e.msg }

func resolveKind(mapper meta.RESTMapper, apiVersion, kind string) (schema.GroupVersionKind, error) {
	if mapper == nil {
		return schema.GroupVersionKind{}, fmt.Errorf("no REST mapper to resolve kind %q", kind)
	}
	var gv schema.GroupVersion
	if apiVersion != "" {
		var err error
		if gv, err = schema.ParseGroupVersion(apiVersion); err != nil {
			return schema.GroupVersionKind{}, &kindError{field: "apiVersion", msg: fmt.Sprintf("apiVersion %q: %v", apiVersion, err)}
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
	if apiVersion == "" {
		return schema.GroupVersionKind{}, &kindError{field: "kind", msg: fmt.Sprintf("unknown kind %q in any served API group; expected a kind, plural or short name the API server serves (kubectl api-resources lists them)", kind)}
	}
	unknown := &kindError{field: "kind", msg: fmt.Sprintf("unknown kind %q in %s; expected a kind, plural or short name the API server serves (kubectl api-resources lists them)", kind, apiVersion)}
	gl, ok := mapper.(groupLister)
	if !ok {
		return schema.GroupVersionKind{}, unknown
	}
	versions, served, err := gl.ServedVersions(gv.Group)
	switch {
	case err != nil:
		return schema.GroupVersionKind{}, fmt.Errorf("resolve kind %q in %s: discover API group %s: %w", kind, apiVersion, groupName(gv.Group), err)
	case !served:
		return schema.GroupVersionKind{}, &kindError{field: "kind", groupNotServed: true,
			msg: fmt.Sprintf("unknown kind %q in %s: API group %s is not served (yet); a CustomResourceDefinition may serve it later", kind, apiVersion, groupName(gv.Group))}
	case !slices.Contains(versions, gv.Version):
		return schema.GroupVersionKind{}, &kindError{field: "apiVersion",
			msg: fmt.Sprintf("%s is not served; served versions of %s: %s", apiVersion, groupName(gv.Group), strings.Join(versions, ", "))}
	}
	return schema.GroupVersionKind{}, unknown
}

// groupName names an API group in messages; the core group has no name.
func groupName(g string) string {
	if g == "" {
		return "the core group"
	}
	return g
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
