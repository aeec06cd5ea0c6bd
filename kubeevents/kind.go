package kubeevents

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
)

// ErrUnknownKind is matched (errors.Is) by every *UnknownKindError.
var ErrUnknownKind = errors.New("unknown kind")

// UnknownKindError says that a binding's kind is not served by the API
// server.
type UnknownKindError struct {
	// APIVersion and Kind as the binding gave them.
	APIVersion string
	Kind       string
	// GroupVersionServed is false when APIVersion names a group version the
	// API server does not serve at all (yet); such a kind may appear once
	// its CustomResourceDefinition is created.
	GroupVersionServed bool
	// Err is the mapper's error.
	Err error
}

func (e *UnknownKindError) Error() string {
	where := "in any API group"
	if e.APIVersion != "" {
		where = fmt.Sprintf("in apiVersion %q", e.APIVersion)
	}
	return fmt.Sprintf("kind %q is not served %s: expected a kind, plural or short name that 'kubectl api-resources' lists", e.Kind, where)
}

// Is makes errors.Is(err, ErrUnknownKind) true.
func (e *UnknownKindError) Is(target error) bool { return target == ErrUnknownKind }

// Unwrap returns the mapper's error.
func (e *UnknownKindError) Unwrap() error { return e.Err }

// mayAppearLater reports whether waiting for the kind makes sense: its
// group version is named and not served yet, as with a CRD created later.
func (e *UnknownKindError) mayAppearLater() bool {
	return e.APIVersion != "" && !e.GroupVersionServed
}

// kindResolver maps a binding's apiVersion and kind, matched
// case-insensitively, as a plural or a short name too, to a REST mapping
// through discovery. It is safe for concurrent use.
type kindResolver struct {
	disc     *discovery.DiscoveryClient
	deferred *restmapper.DeferredDiscoveryRESTMapper
	mapper   meta.RESTMapperWithContext
}

func newKindResolver(disc *discovery.DiscoveryClient) *kindResolver {
	cached := memory.NewMemCacheClientWithContext(disc)
	deferred := restmapper.NewDeferredDiscoveryRESTMapperWithContext(cached)
	return &kindResolver{
		disc:     disc,
		deferred: deferred,
		mapper:   restmapper.NewShortcutExpanderWithContext(deferred, cached, nil),
	}
}

// reset forgets the cached discovery information.
func (r *kindResolver) reset(ctx context.Context) { r.deferred.ResetWithContext(ctx) }

// resolve returns the mapping, or an *UnknownKindError when the kind is not
// served, or another error when discovery failed.
func (r *kindResolver) resolve(ctx context.Context, apiVersion, kind string) (*meta.RESTMapping, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, fmt.Errorf("parse apiVersion %q: %w", apiVersion, err)
	}
	if strings.TrimSpace(kind) == "" {
		return nil, errors.New("kind is empty: expected a kind such as ConfigMap")
	}
	mapping, err := r.lookup(ctx, gv, kind)
	if err == nil {
		return mapping, nil
	}
	if !meta.IsNoMatchError(err) && !isNotFoundResource(err) {
		return nil, fmt.Errorf("map kind %q in apiVersion %q: %w", kind, apiVersion, err)
	}
	// The cache may predate a CRD: look once more with fresh discovery.
	r.reset(ctx)
	mapping, err = r.lookup(ctx, gv, kind)
	if err == nil {
		return mapping, nil
	}
	if !meta.IsNoMatchError(err) && !isNotFoundResource(err) {
		return nil, fmt.Errorf("map kind %q in apiVersion %q: %w", kind, apiVersion, err)
	}
	ke := &UnknownKindError{APIVersion: apiVersion, Kind: kind, Err: err}
	if apiVersion != "" {
		served, serr := r.groupVersionServed(ctx, gv)
		if serr != nil {
			return nil, fmt.Errorf("discover %s: %w", apiVersion, serr)
		}
		ke.GroupVersionServed = served
	}
	return nil, ke
}

func (r *kindResolver) lookup(ctx context.Context, gv schema.GroupVersion, kind string) (*meta.RESTMapping, error) {
	// Exact kinds first; then the lower-cased name as a resource, which
	// covers case-insensitive kinds (singular names), plurals and short names.
	if mapping, err := r.mapper.RESTMappingWithContext(ctx, schema.GroupKind{Group: gv.Group, Kind: kind}, versions(gv)...); err == nil {
		return mapping, nil
	}
	gvr, err := r.mapper.ResourceForWithContext(ctx, gv.WithResource(strings.ToLower(kind)))
	if err != nil {
		return nil, err
	}
	gvk, err := r.mapper.KindForWithContext(ctx, gvr)
	if err != nil {
		return nil, err
	}
	return r.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
}

func versions(gv schema.GroupVersion) []string {
	if gv.Version == "" {
		return nil
	}
	return []string{gv.Version}
}

func (r *kindResolver) groupVersionServed(ctx context.Context, gv schema.GroupVersion) (bool, error) {
	_, err := r.disc.ServerResourcesForGroupVersionWithContext(ctx, gv.String())
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	default:
		return false, err
	}
}

// isNotFoundResource matches the mapper's "not found" for an unknown
// resource name, which is not always a NoMatch error.
func isNotFoundResource(err error) bool {
	var nrf *meta.NoResourceMatchError
	var nkf *meta.NoKindMatchError
	return errors.As(err, &nrf) || errors.As(err, &nkf)
}
