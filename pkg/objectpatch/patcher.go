package objectpatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	"github.com/itchyny/gojq"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/retry"

	"github.com/gadgetpm/gadgetpm/pkg/identity"
)

// Options configures a Patcher. The zero value of every field means its
// default; a nil *Options means all defaults.
type Options struct {
	// QPS and Burst limit the Patcher's own client; hooks may write many
	// objects at once. Defaults: 100 and 200.
	QPS   float32
	Burst int
	// Logger receives one line per applied operation at V(1). Default:
	// discard.
	Logger logr.Logger
}

// Patcher applies patch operations through its own dynamic client. It is
// safe for concurrent use.
type Patcher struct {
	// config is the client's, kept for ForPackage.
	config  *rest.Config
	dynamic dynamic.Interface
	mapper  meta.RESTMapper
	log     logr.Logger
	// namespace holds namespaced objects that name none.
	namespace string
}

// New returns a Patcher whose client is a copy of cfg with its own QPS and
// burst. mapper resolves kinds; nil builds one from discovery, with short
// names. When mapper can be reset (meta.ResettableRESTMapper) an unknown kind
// resets it once, so that a CRD created by an earlier operation is found.
func New(cfg *rest.Config, mapper meta.RESTMapper, opts *Options) (*Patcher, error) {
	if cfg == nil {
		return nil, errors.New("create object patcher: rest config is nil")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.QPS == 0 {
		o.QPS = 100
	}
	if o.Burst == 0 {
		o.Burst = 200
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = o.QPS, o.Burst
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("create object patcher client: %w", err)
	}
	if mapper == nil {
		disc, err := discovery.NewDiscoveryClientForConfig(c)
		if err != nil {
			return nil, fmt.Errorf("create object patcher discovery client: %w", err)
		}
		deferred := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
		mapper = restmapper.NewShortcutExpander(deferred, disc, nil)
	}
	return &Patcher{config: c, dynamic: dyn, mapper: mapper, log: o.Logger, namespace: metav1.NamespaceDefault}, nil
}

// ForPackage returns a Patcher for the object patches of a package in
// namespace: a namespaced object that names no namespace goes there (not
// to "default"), and, when serviceAccount is not empty, every request acts
// as that ServiceAccount of namespace (impersonation), so the API server
// allows the package what the account may do and no more. It shares p's
// REST mapper and rate limits; it holds no goroutine, so dropping it is
// enough.
func (p *Patcher) ForPackage(namespace, serviceAccount string) (*Patcher, error) {
	if namespace == "" {
		return nil, errors.New("object patcher for a package: empty namespace")
	}
	q := *p
	q.namespace = namespace
	q.log = p.log.WithValues("namespace", namespace)
	if serviceAccount != "" {
		q.config = identity.Impersonate(p.config, namespace, serviceAccount)
		dyn, err := dynamic.NewForConfig(q.config)
		if err != nil {
			return nil, fmt.Errorf("create object patcher client for %s: %w", identity.Subject(identity.UserName(namespace, serviceAccount)), err)
		}
		q.dynamic = dyn
		q.log = q.log.WithValues("serviceAccount", serviceAccount)
	}
	return &q, nil
}

// Apply parses data (see ParseOperations) and applies every operation in
// order. A failed operation does not stop the others. The returned error
// joins one error per failure, each naming the operation's index, type,
// kind and namespace/name, and the API server's message. When data does not
// parse, nothing is applied and the parse error is returned.
func (p *Patcher) Apply(ctx context.Context, data []byte) error {
	ops, err := ParseOperations(data)
	if err != nil {
		return err
	}
	return p.ApplyOperations(ctx, ops)
}

// ApplyOperations applies operations, as Apply does. Operations built by
// hand rather than by ParseOperations are checked for their required fields;
// a JQPatch's filter is compiled on first use.
func (p *Patcher) ApplyOperations(ctx context.Context, ops []Operation) error {
	var errs []error
	for i := range ops {
		op := &ops[i]
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: not attempted: %w", op.describe(), err))
			continue
		}
		if err := p.apply(ctx, op); err != nil {
			if fe, ok := identity.AsForbidden(err); ok {
				// Who was refused what, rather than the API server's long form.
				err = fe
			}
			errs = append(errs, fmt.Errorf("%s: %w", op.describe(), err))
			continue
		}
		p.log.V(1).Info("applied patch operation", "index", op.Index, "operation", op.Type, "target", op.Target())
	}
	return errors.Join(errs...)
}

// check catches operations built by hand that ParseOperations would have
// refused, so that none of them reaches a nil field.
func (op *Operation) check() error {
	switch op.Type {
	case Create, CreateOrUpdate, CreateIfNotExists:
		if op.Object == nil {
			return errors.New("field object is missing: expected a Kubernetes object")
		}
		return nil
	case Delete, DeleteInBackground, DeleteNonCascading, MergePatch, JSONPatch, JQPatch:
		if op.Kind == "" || op.Name == "" {
			return errors.New("fields kind and name are required")
		}
	default:
		return fmt.Errorf("field operation is %q: expected one of %s", op.Type, typeList())
	}
	switch {
	case op.Type == MergePatch && len(op.MergePatch) == 0:
		return errors.New("field mergePatch is missing")
	case op.Type == JSONPatch && len(op.JSONPatch) == 0:
		return errors.New("field jsonPatch is missing")
	case op.Type == JQPatch && op.jq == nil:
		q, err := gojq.Parse(op.JQFilter)
		if err == nil {
			op.jq, err = gojq.Compile(q)
		}
		if err != nil {
			return fmt.Errorf("field jqFilter %q does not compile: %v", op.JQFilter, err)
		}
	}
	return nil
}

func (p *Patcher) apply(ctx context.Context, op *Operation) error {
	if err := op.check(); err != nil {
		return err
	}
	apiVersion, kind, ns := op.APIVersion, op.Kind, op.Namespace
	if op.Object != nil {
		apiVersion, kind, ns = op.Object.GetAPIVersion(), op.Object.GetKind(), op.Object.GetNamespace()
	}
	mapping, err := p.resolve(apiVersion, kind)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = p.dynamic.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if ns == "" {
			ns = p.namespace
		}
		ri = p.dynamic.Resource(mapping.Resource).Namespace(ns)
	}
	sub := subresources(op.Subresource)

	switch op.Type {
	case Create, CreateIfNotExists:
		created, err := ri.Create(ctx, op.Object, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) && op.Type == CreateIfNotExists {
			return nil
		}
		if err != nil {
			return err
		}
		return p.writeSubresource(ctx, ri, op, created.GetResourceVersion(), created.GetName())
	case CreateOrUpdate:
		var rv, name string
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			created, err := ri.Create(ctx, op.Object, metav1.CreateOptions{})
			if err == nil {
				rv, name = created.GetResourceVersion(), created.GetName()
				return nil
			}
			if !apierrors.IsAlreadyExists(err) {
				return err
			}
			existing, err := ri.Get(ctx, op.Object.GetName(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			obj := op.Object.DeepCopy()
			obj.SetResourceVersion(existing.GetResourceVersion())
			updated, err := ri.Update(ctx, obj, metav1.UpdateOptions{})
			if err != nil {
				return err
			}
			rv, name = updated.GetResourceVersion(), updated.GetName()
			return nil
		})
		if err != nil {
			return err
		}
		return p.writeSubresource(ctx, ri, op, rv, name)
	case Delete, DeleteInBackground, DeleteNonCascading:
		policy := map[OperationType]metav1.DeletionPropagation{
			Delete:             metav1.DeletePropagationForeground,
			DeleteInBackground: metav1.DeletePropagationBackground,
			DeleteNonCascading: metav1.DeletePropagationOrphan,
		}[op.Type]
		err := ri.Delete(ctx, op.Name, metav1.DeleteOptions{PropagationPolicy: &policy})
		if apierrors.IsNotFound(err) {
			return nil // already gone is what was asked for
		}
		return err
	case MergePatch, JSONPatch:
		pt, patch := types.MergePatchType, op.MergePatch
		if op.Type == JSONPatch {
			pt, patch = types.JSONPatchType, op.JSONPatch
		}
		_, err := ri.Patch(ctx, op.Name, pt, patch, metav1.PatchOptions{}, sub...)
		if apierrors.IsNotFound(err) && op.IgnoreMissingObject {
			return nil
		}
		return err
	case JQPatch:
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := ri.Get(ctx, op.Name, metav1.GetOptions{}, sub...)
			if err != nil {
				return err
			}
			next, err := runJQ(op, cur)
			if err != nil {
				return err
			}
			_, err = ri.Update(ctx, next, metav1.UpdateOptions{}, sub...)
			return err
		})
		if apierrors.IsNotFound(err) && op.IgnoreMissingObject {
			return nil
		}
		return err
	}
	return fmt.Errorf("operation type %q is not supported", op.Type)
}

// writeSubresource writes the object's subresource after a Create
// operation created or updated the main resource.
func (p *Patcher) writeSubresource(ctx context.Context, ri dynamic.ResourceInterface, op *Operation, rv, name string) error {
	if op.Subresource == "" {
		return nil
	}
	obj := op.Object.DeepCopy()
	obj.SetName(name)
	obj.SetResourceVersion(rv)
	if _, err := ri.Update(ctx, obj, metav1.UpdateOptions{}, op.Subresource); err != nil {
		return fmt.Errorf("write subresource %s: %w", op.Subresource, err)
	}
	return nil
}

func subresources(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func runJQ(op *Operation, cur *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	// A JSON round trip with json.Number gives gojq the number types it
	// knows, without losing precision of large integers.
	b, err := cur.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode object: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var in any
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("decode object: %w", err)
	}
	iter := op.jq.Run(in)
	v, ok := iter.Next()
	if !ok {
		return nil, fmt.Errorf("jqFilter %q yielded nothing: expected the new object", op.JQFilter)
	}
	if err, ok := v.(error); ok {
		return nil, fmt.Errorf("run jqFilter %q: %w", op.JQFilter, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("jqFilter %q yielded %T: expected the new object", op.JQFilter, v)
	}
	out, err := gojq.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode result of jqFilter %q: %w", op.JQFilter, err)
	}
	next := &unstructured.Unstructured{}
	if err := next.UnmarshalJSON(out); err != nil {
		return nil, fmt.Errorf("result of jqFilter %q is not an object: %w", op.JQFilter, err)
	}
	return next, nil
}

// resolve maps apiVersion and kind, matched exactly first and then
// case-insensitively as a kind, plural or short name.
func (p *Patcher) resolve(apiVersion, kind string) (*meta.RESTMapping, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, fmt.Errorf("parse apiVersion %q: %w", apiVersion, err)
	}
	mapping, err := p.lookup(gv, kind)
	if err != nil && meta.IsNoMatchError(err) {
		if r, ok := p.mapper.(meta.ResettableRESTMapper); ok {
			r.Reset()
			mapping, err = p.lookup(gv, kind)
		}
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("kind %q in apiVersion %q is not served by the API server: expected a kind that 'kubectl api-resources' lists", kind, apiVersion)
		}
		return nil, fmt.Errorf("map kind %q: %w", kind, err)
	}
	return mapping, nil
}

func (p *Patcher) lookup(gv schema.GroupVersion, kind string) (*meta.RESTMapping, error) {
	var versions []string
	if gv.Version != "" {
		versions = []string{gv.Version}
	}
	if m, err := p.mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: kind}, versions...); err == nil {
		return m, nil
	}
	gvr, err := p.mapper.ResourceFor(gv.WithResource(strings.ToLower(kind)))
	if err != nil {
		return nil, err
	}
	gvk, err := p.mapper.KindFor(gvr)
	if err != nil {
		return nil, err
	}
	return p.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
}
