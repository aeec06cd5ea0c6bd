package trace

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// loaded is a gadget read from a verified package archive, with what it
// offers.
type loaded struct {
	digest string
	gadget gadget.Gadget
	// params the gadget and the runtime's stages accept.
	params []gadget.ParamDesc
	// tracers and snapshotters: the names of its data sources by kind.
	tracers, snapshotters []string
}

func (l *loaded) paramKeys() []string {
	keys := make([]string, 0, len(l.params))
	for _, p := range l.params {
		keys = append(keys, p.Key)
	}
	sort.Strings(keys)
	return keys
}

// gadgets caches loaded gadgets by archive digest. Safe for concurrent use.
type gadgets struct {
	mu    sync.Mutex
	byID  map[string]*loaded // guarded by mu
	holds map[string]func()  // store holds of byID's digests (put); guarded by mu
}

// findPackage resolves tr's spec.gadget (resolvePackage) and, with
// NoCrossNamespaceRefs, refuses a package of another namespace, logging
// the refusal; the caller writes it to the Trace's status and Events.
func (c *Controller) findPackage(ctx context.Context, tr *gadgetv1alpha1.Trace) (*v1alpha1.GadgetPackage, error) {
	gp, err := resolvePackage(ctx, c.opts.Client, tr, c.opts.NoCrossNamespaceRefs)
	if errors.Is(err, errCrossNamespace) {
		c.log.Error(err, "refused a reference to a package of another namespace", "trace", tr.Namespace+"/"+tr.Name, "gadget", tr.Spec.Gadget)
	}
	return gp, err
}

// errCrossNamespace marks a spec.gadget refused by NoCrossNamespaceRefs.
var errCrossNamespace = errors.New("--no-cross-namespace-refs is set: a Trace may use only a GadgetPackage of its own namespace")

// resolvePackage resolves spec.gadget: "<namespace>/<name>", or "<name>"
// as a GadgetPackage name in the Trace's namespace, then in any
// namespace, then as a package (spec.package) name, each only when
// unambiguous. With sameNamespace, "<name>" is looked up in the Trace's
// namespace only, and a package of another namespace is refused
// (errCrossNamespace) instead of used.
func resolvePackage(ctx context.Context, c client.Reader, tr *gadgetv1alpha1.Trace, sameNamespace bool) (*v1alpha1.GadgetPackage, error) {
	ref := tr.Spec.Gadget
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		if sameNamespace && ns != tr.Namespace {
			return nil, fmt.Errorf("spec.gadget %s names a GadgetPackage in namespace %s, not the Trace's namespace %s: %w; install the package in %s", ref, ns, tr.Namespace, errCrossNamespace, tr.Namespace)
		}
		var gp v1alpha1.GadgetPackage
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &gp); err != nil {
			return nil, fmt.Errorf("spec.gadget %s: read GadgetPackage: %w", ref, client.IgnoreNotFound(err))
		}
		return &gp, nil
	}
	var list v1alpha1.GadgetPackageList
	if err := c.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("spec.gadget %s: list GadgetPackages: %w", ref, err)
	}
	// elsewhere: what sameNamespace keeps out, to say why.
	var byName, byPackage, elsewhere []*v1alpha1.GadgetPackage
	for i := range list.Items {
		gp := &list.Items[i]
		if gp.Name == ref && gp.Namespace == tr.Namespace {
			return gp, nil
		}
		if sameNamespace && gp.Namespace != tr.Namespace {
			if gp.Name == ref || gp.Spec.Package == ref {
				elsewhere = append(elsewhere, gp)
			}
			continue
		}
		if gp.Name == ref {
			byName = append(byName, gp)
		}
		if gp.Spec.Package == ref {
			byPackage = append(byPackage, gp)
		}
	}
	if len(byName)+len(byPackage) == 0 && len(elsewhere) > 0 {
		return nil, fmt.Errorf("spec.gadget %s is found only in another namespace (%s), not in the Trace's namespace %s: %w; install the package in %s", ref, keys(elsewhere), tr.Namespace, errCrossNamespace, tr.Namespace)
	}
	for _, found := range [][]*v1alpha1.GadgetPackage{byName, byPackage} {
		switch len(found) {
		case 0:
			continue
		case 1:
			return found[0], nil
		}
		return nil, fmt.Errorf("spec.gadget %s is ambiguous: it names %s; write <namespace>/<name>", ref, keys(found))
	}
	return nil, nil
}

// keys lists "<namespace>/<name>" of gps, sorted.
func keys(gps []*v1alpha1.GadgetPackage) string {
	names := make([]string, len(gps))
	for i, gp := range gps {
		names[i] = gp.Namespace + "/" + gp.Name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// packageRunning says why gp cannot serve Traces, or "" when it can.
func packageRunning(gp *v1alpha1.GadgetPackage) string {
	key := gp.Namespace + "/" + gp.Name
	switch {
	case gp.DeletionTimestamp != nil:
		return fmt.Sprintf("package %s is being removed", key)
	case !gp.Spec.IsEnabled():
		return fmt.Sprintf("package %s was disabled: spec.enabled is false", key)
	case gp.Status.Phase != v1alpha1.PhaseRunning || !gp.Status.Enabled:
		phase := string(gp.Status.Phase)
		if phase == "" {
			phase = "Pending"
		}
		reason := gp.Status.Reason
		if reason == "" {
			reason = "it is not installed and started yet"
		}
		return fmt.Sprintf("package %s is not Running (phase %s): %s", key, phase, reason)
	case gp.Status.Digest == "":
		return fmt.Sprintf("package %s records no digest in its status", key)
	}
	return ""
}

// load returns the gadget of gp's installed digest: from the cache, else
// from the store (which checks the archive against its digest), else
// downloaded through the fetcher and checked against the digest the
// package's status records.
func (c *Controller) load(ctx context.Context, gp *v1alpha1.GadgetPackage) (*loaded, error) {
	digest := gp.Status.Digest
	c.gadgets.mu.Lock()
	l, ok := c.gadgets.byID[digest]
	c.gadgets.mu.Unlock()
	if ok {
		return l, nil
	}
	key := gp.Namespace + "/" + gp.Name
	if _, ok := c.opts.Store.Archive(digest); !ok {
		if err := c.opts.Fetcher.FetchArchive(ctx, gp); err != nil {
			return nil, fmt.Errorf("fetch package %s (sha256:%s): %w", key, digest, err)
		}
	}
	dir, err := c.opts.Store.Unpack(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("unpack package %s: %w", key, err)
	}
	g, err := gadget.ReadGadget(dir)
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", key, err)
	}
	g.Name = gp.Spec.Package
	info, err := c.rt.Info(ctx, g, gadget.RunOptions{})
	if err != nil {
		return nil, fmt.Errorf("package %s: read gadget: %w", key, err)
	}
	l = &loaded{digest: digest, gadget: g, params: info.Params}
	for _, ds := range info.DataSources {
		switch ds.Type() {
		case datasource.TypeSnapshotter:
			l.snapshotters = append(l.snapshotters, ds.Name())
		default:
			l.tracers = append(l.tracers, ds.Name())
		}
	}
	return c.gadgets.put(digest, l, c.opts.Store), nil
}

// checkParams fails on parameters the gadget does not declare, naming
// them and the accepted ones.
func checkParams(tr *gadgetv1alpha1.Trace, l *loaded) error {
	known := map[string]bool{}
	for _, p := range l.params {
		known[p.Key] = true
	}
	var unknown []string
	for k := range tr.Spec.Parameters {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("spec.parameters: %s not declared by gadget %s (it accepts: %s)", strings.Join(unknown, ", "), l.gadget.Name, strings.Join(l.paramKeys(), ", "))
}

// paramsKey is the canonical text of a run's params: sorted key=value
// lines. Runs share a loaded program only when it is equal.
func paramsKey(p map[string]string) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(p[k])
		b.WriteByte(0)
	}
	return b.String()
}
