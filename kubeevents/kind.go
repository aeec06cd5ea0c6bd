package kubeevents

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ErrUnknownKind is matched (errors.Is) by every *UnknownKindError.
var ErrUnknownKind = errors.New("unknown kind")

// UnknownKindError says that a binding's kind is not served by the API
// server, and why: the kind is missing from a served group version, the
// group is served at other versions only, or the group is not served at
// all (yet).
type UnknownKindError struct {
	// APIVersion and Kind as the binding gave them.
	APIVersion string
	Kind       string
	// GroupServed is true when the API server serves APIVersion's group at
	// some version.
	GroupServed bool
	// ServedVersions are the versions the group is served at, sorted by
	// the server's preference, when GroupServed.
	ServedVersions []string
	// GroupVersionServed is true when APIVersion names a group version the
	// API server serves: the kind is then missing from it.
	GroupVersionServed bool
	// Err is the mapper's error.
	Err error
}

func (e *UnknownKindError) Error() string {
	switch {
	case e.APIVersion == "":
		return fmt.Sprintf("kind %q is not served in any API group: expected a kind, plural or short name that 'kubectl api-resources' lists", e.Kind)
	case e.GroupVersionServed:
		return fmt.Sprintf("kind %q is not served in apiVersion %q: expected a kind, plural or short name that 'kubectl api-resources' lists", e.Kind, e.APIVersion)
	case e.GroupServed:
		return fmt.Sprintf("%s is not served; served versions of %s: %s", e.APIVersion, groupName(e.group()), strings.Join(e.ServedVersions, ", "))
	default:
		return fmt.Sprintf("API group %s is not served (yet): no CustomResourceDefinition serves kind %q in %s", groupName(e.group()), e.Kind, e.APIVersion)
	}
}

// Is makes errors.Is(err, ErrUnknownKind) true.
func (e *UnknownKindError) Is(target error) bool { return target == ErrUnknownKind }

// Unwrap returns the mapper's error.
func (e *UnknownKindError) Unwrap() error { return e.Err }

// MayAppearLater reports whether waiting for the kind makes sense: its
// apiVersion names an API group that is not served at all, as with a CRD
// created later. A group served at other versions, or a group version
// served without the kind, is a mistake in the binding instead.
func (e *UnknownKindError) MayAppearLater() bool {
	return e.APIVersion != "" && !e.GroupServed
}

func (e *UnknownKindError) group() string {
	gv, err := schema.ParseGroupVersion(e.APIVersion)
	if err != nil {
		return e.APIVersion
	}
	return gv.Group
}

// groupName names an API group in messages; the core group has no name.
func groupName(g string) string {
	if g == "" {
		return "the core group"
	}
	return g
}

// KindMapper maps bindings' kinds to resources. It must refresh itself
// when a lookup misses, so that a kind whose CRD is created after the
// first lookup is found (restmapping.Mapper does; the operator passes the
// process's shared one).
type KindMapper interface {
	meta.RESTMapper
	// ServedVersions returns the versions the API server serves group at,
	// preferred first, and whether it serves the group at all.
	ServedVersions(group string) ([]string, bool, error)
}

// kindResolver maps a binding's apiVersion and kind, matched
// case-insensitively, as a plural or a short name too, to a REST mapping
// through the mapper. It is safe for concurrent use.
type kindResolver struct {
	mapper KindMapper
}

// resolve returns the mapping, or an *UnknownKindError when the kind is not
// served, or another error when discovery failed.
func (r *kindResolver) resolve(apiVersion, kind string) (*meta.RESTMapping, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, fmt.Errorf("parse apiVersion %q: %w", apiVersion, err)
	}
	if strings.TrimSpace(kind) == "" {
		return nil, errors.New("kind is empty: expected a kind such as ConfigMap")
	}
	// The mapper refreshes its cache on a miss: a kind still missing is
	// not served now.
	mapping, err := r.lookup(gv, kind)
	if err == nil {
		return mapping, nil
	}
	if !meta.IsNoMatchError(err) && !isNotFoundResource(err) {
		return nil, fmt.Errorf("map kind %q in apiVersion %q: %w", kind, apiVersion, err)
	}
	ke := &UnknownKindError{APIVersion: apiVersion, Kind: kind, Err: err}
	if apiVersion != "" {
		versions, served, serr := r.mapper.ServedVersions(gv.Group)
		if serr != nil {
			return nil, fmt.Errorf("discover API group %s: %w", groupName(gv.Group), serr)
		}
		ke.GroupServed, ke.ServedVersions = served, versions
		ke.GroupVersionServed = served && slices.Contains(versions, gv.Version)
	}
	return nil, ke
}

func (r *kindResolver) lookup(gv schema.GroupVersion, kind string) (*meta.RESTMapping, error) {
	// Exact kinds first; then the lower-cased name as a resource, which
	// covers case-insensitive kinds (singular names), plurals and short names.
	if mapping, err := r.mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: kind}, versions(gv)...); err == nil {
		return mapping, nil
	}
	gvr, err := r.mapper.ResourceFor(gv.WithResource(strings.ToLower(kind)))
	if err != nil {
		return nil, err
	}
	gvk, err := r.mapper.KindFor(gvr)
	if err != nil {
		return nil, err
	}
	return r.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
}

func versions(gv schema.GroupVersion) []string {
	if gv.Version == "" {
		return nil
	}
	return []string{gv.Version}
}

// isNotFoundResource matches the mapper's "not found" for an unknown
// resource name, which is not always a NoMatch error.
func isNotFoundResource(err error) bool {
	var nrf *meta.NoResourceMatchError
	var nkf *meta.NoKindMatchError
	return errors.As(err, &nrf) || errors.As(err, &nkf)
}
