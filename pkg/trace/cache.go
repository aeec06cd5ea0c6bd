package trace

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/gadgetpm/gadgetpm/packages/pull"
	"github.com/gadgetpm/gadgetpm/packages/store"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// CacheOptions are the controller manager's cache options for a process
// that runs the node role alone (every node pays for what it caches): no
// object keeps its managedFields, and GadgetPackages keep only what a node
// reads (not settings, hooks, catalog, conditions or subscriptions). Nodes
// are cached as metadata only whatever the options (the controller reads
// them as PartialObjectMetadata: it only checks that spec.node exists), and
// so are Namespaces (watched for the privileged-traces label).
//
// Traces are cached cluster-wide: a node answers a Trace annotated for a
// node that does not exist, and the Trace CRD has no selectable spec.node.
// A process that also runs the cluster role must not use these options: it
// reads what they drop.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.GadgetPackage{}: {Transform: slimPackage},
		},
	}
}

// lastApplied is kubectl's copy of the object it applied: a node never
// reads it.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func stripMeta(o client.Object) {
	o.SetManagedFields(nil)
	if a := o.GetAnnotations(); a[lastApplied] != "" {
		delete(a, lastApplied)
		o.SetAnnotations(a)
	}
}

// slimPackage keeps what resolving spec.gadget, packageRunning and the
// download of the archive read.
func slimPackage(obj any) (any, error) {
	gp, ok := obj.(*v1alpha1.GadgetPackage)
	if !ok {
		return obj, nil
	}
	stripMeta(gp)
	gp.Spec.Settings = nil
	gp.Status.Conditions = nil
	gp.Status.Hooks = nil
	gp.Status.Catalog = nil
	gp.Status.Subscriptions = nil
	return gp, nil
}

// slimPod keeps what the enricher's index of the node's pods reads: names,
// labels and the containers' names and ids.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{TypeMeta: p.TypeMeta, ObjectMeta: p.ObjectMeta}
	out.ManagedFields, out.Annotations, out.OwnerReferences = nil, nil, nil
	keep := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		if len(in) == 0 {
			return nil
		}
		s := make([]corev1.ContainerStatus, len(in))
		for i, cs := range in {
			s[i] = corev1.ContainerStatus{Name: cs.Name, ContainerID: cs.ContainerID}
		}
		return s
	}
	out.Status.InitContainerStatuses = keep(p.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = keep(p.Status.ContainerStatuses)
	out.Status.EphemeralContainerStatuses = keep(p.Status.EphemeralContainerStatuses)
	return out, nil
}

// put caches l under digest, unless a concurrent load cached one first,
// and holds the digest in the store while it is cached (the store's
// garbage collection keeps it). It returns the cached gadget.
func (g *gadgets) put(digest string, l *loaded, st *store.Store) *loaded {
	g.mu.Lock()
	defer g.mu.Unlock()
	if have, ok := g.byID[digest]; ok {
		return have
	}
	if g.holds == nil {
		g.holds = map[string]func(){}
	}
	g.byID[digest] = l
	g.holds[digest] = st.Hold(digest)
	return l
}

// prune drops the cached gadgets of the digests neither named (some
// package's status) nor used by a run, releasing their store holds; it
// returns the digests dropped.
func (g *gadgets) prune(named, used map[string]bool) []string {
	g.mu.Lock()
	var release []func()
	var dropped []string
	for d := range g.byID {
		if named[d] || used[d] {
			continue
		}
		delete(g.byID, d)
		if h := g.holds[d]; h != nil {
			release = append(release, h)
			delete(g.holds, d)
		}
		dropped = append(dropped, d)
	}
	g.mu.Unlock()
	for _, h := range release {
		h()
	}
	sort.Strings(dropped)
	return dropped
}

// usedDigests are the digests of the node's runs.
func (c *Controller) usedDigests() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	used := make(map[string]bool, len(c.runs))
	for k := range c.runs {
		used[k.digest] = true
	}
	for _, r := range c.byID {
		used[r.key.digest] = true
	}
	return used
}

// cacheGC is the Runnable that owns the node's caches: at start it removes
// the File outputs of Traces that no longer exist; at start and every
// CacheGCInterval it drops the cached gadgets no package's status names
// and no run uses, and collects the package store when the controller
// opened it (a store shared with the cluster role is collected there).
type cacheGC struct {
	c     *Controller
	store *store.Collector // nil: the store is not ours
}

func (g cacheGC) NeedLeaderElection() bool { return false }

func (g cacheGC) Start(ctx context.Context) error {
	c := g.c
	if err := c.collectOutputs(ctx); err != nil && ctx.Err() == nil {
		c.log.Error(err, "file outputs of deleted Traces not removed at start")
	}
	named := pull.NamedDigests(c.opts.Client)
	t := time.NewTicker(c.opts.CacheGCInterval)
	defer t.Stop()
	for {
		if n, err := named(ctx); err != nil {
			if ctx.Err() == nil {
				c.log.Error(err, "gadget cache garbage collection skipped: cannot tell which digests are in use")
			}
		} else if dropped := c.gadgets.prune(n, c.usedDigests()); len(dropped) > 0 {
			c.log.Info("gadget cache garbage collection", "dropped", dropped)
		}
		if g.store != nil {
			g.store.Once(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// collectOutputs removes the File output files no existing Trace names
// (by spec.output or by its name): those of Traces deleted while the node
// was down.
func (c *Controller) collectOutputs(ctx context.Context) error {
	listed := time.Now()
	var list gadgetv1alpha1.TraceList
	if err := c.opts.APIReader.List(ctx, &list); err != nil {
		return fmt.Errorf("list Traces to find their File outputs: %w", err)
	}
	keep := map[[2]string]bool{}
	for _, tr := range list.Items {
		keep[[2]string{tr.Namespace, tr.Name}] = true
		keep[[2]string{tr.Namespace, output.FileName(tr.Spec.Output, tr.Name)}] = true
	}
	freed, err := output.CollectFiles(c.opts.FileOutputDir, listed, func(ns, name string) bool { return keep[[2]string{ns, name}] })
	if freed > 0 {
		c.log.Info("removed the File outputs of deleted Traces", "dir", c.opts.FileOutputDir, "bytesFreed", freed)
	}
	return err
}

// removeOutput removes the File output of tr, being deleted, unless
// another Trace of its namespace writes to the same file.
func (c *Controller) removeOutput(ctx context.Context, tr *gadgetv1alpha1.Trace) error {
	name := output.FileName(tr.Spec.Output, tr.Name)
	var list gadgetv1alpha1.TraceList
	if err := c.opts.APIReader.List(ctx, &list, client.InNamespace(tr.Namespace)); err != nil {
		return fmt.Errorf("Trace %s/%s: remove its File output: list the Traces of its namespace: %w", tr.Namespace, tr.Name, err)
	}
	for _, o := range list.Items {
		if o.Name != tr.Name && o.DeletionTimestamp.IsZero() && output.FileName(o.Spec.Output, o.Name) == name {
			return nil // shared with o: removed with the last one
		}
	}
	freed, err := output.RemoveFiles(c.opts.FileOutputDir, tr.Namespace, name)
	if err != nil {
		return fmt.Errorf("Trace %s/%s: %w", tr.Namespace, tr.Name, err)
	}
	if freed > 0 {
		c.log.Info("removed the File output of a deleted Trace", "trace", tr.Namespace+"/"+tr.Name, "file", name, "bytesFreed", freed)
	}
	return nil
}

// addCacheGC adds the cacheGC of c to mgr.
func (c *Controller) addCacheGC(mgr manager.Manager) error {
	g := cacheGC{c: c}
	if c.ownStore {
		col, err := store.NewCollector(store.CollectorOptions{Store: c.opts.Store, Named: c.namedOrUsed,
			Interval: c.opts.CacheGCInterval, Logger: c.log.WithName("store-gc"), Now: c.opts.Now})
		if err != nil {
			return err
		}
		g.store = col
	}
	return mgr.Add(g)
}

// namedOrUsed is what the node's package store keeps: the digests some
// package's status names and those of the node's runs (a running Trace
// keeps its digest after an upgrade).
func (c *Controller) namedOrUsed(ctx context.Context) (map[string]bool, error) {
	named, err := pull.NamedDigests(c.opts.Client)(ctx)
	if err != nil {
		return nil, err
	}
	for d := range c.usedDigests() {
		named[d] = true
	}
	return named, nil
}
