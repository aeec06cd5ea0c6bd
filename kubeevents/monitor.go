package kubeevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

// entry is one watched object as the snapshot keeps it.
type entry struct {
	namespace, name string
	// object is nil when KeepFullObjectsInMemory is false.
	object *unstructured.Unstructured
	result json.RawMessage
	// sum is the checksum of the filter result, or of the resourceVersion
	// without a filter; an update that keeps it fires nothing.
	sum uint64
}

// source is the set of informers watching one namespace ("" for all
// namespaces or a cluster-scoped kind).
type source struct {
	namespace string
	stopCh    chan struct{}
	synced    []cache.InformerSynced
	// alive is cleared when the source is dropped, so that its handlers
	// change nothing afterwards; guarded by monitor.mu.
	alive bool
}

// monitor watches one binding. Its goroutines belong to it: stop closes
// stopCh and waits for all of them.
type monitor struct {
	owner *Monitors
	// dynamic is the client of the monitor's identity.
	dynamic dynamic.Interface
	cfg     Config
	filter  *filter
	log     logr.Logger
	wanted  map[WatchEvent]bool

	// lifeMu serialises start and stop.
	lifeMu  sync.Mutex
	running bool          // guarded by lifeMu
	stopCh  chan struct{} // guarded by lifeMu
	wg      sync.WaitGroup

	mu sync.Mutex
	// mapping is nil until the kind is served; guarded by mu.
	mapping *meta.RESTMapping
	// waiting says why the running monitor waits for its kind; empty once
	// the kind is served. Guarded by mu.
	waiting string
	// active is true between start and stop; no source is added while it
	// is false. Guarded by mu.
	active bool
	// synced is set once the initial list is in objects; before that,
	// changes only update objects. Guarded by mu.
	synced bool
	// sources by namespace; guarded by mu.
	sources map[string]*source
	// objects by "namespace/name"; guarded by mu.
	objects map[string]*entry
	// refused holds the API server's refusals of lists and watches by
	// "<access key> <verb>", while they last; guarded by mu.
	refused map[string]*ForbiddenError
}

func newMonitor(owner *Monitors, cfg Config, flt *filter, mapping *meta.RESTMapping, dyn dynamic.Interface) *monitor {
	wanted := map[WatchEvent]bool{WatchEventAdded: true, WatchEventModified: true, WatchEventDeleted: true}
	if cfg.ExecuteHookOnEvent != nil {
		wanted = map[WatchEvent]bool{}
		for _, ev := range cfg.ExecuteHookOnEvent {
			wanted[ev] = true
		}
	}
	return &monitor{
		owner:   owner,
		dynamic: dyn,
		cfg:     cfg,
		filter:  flt,
		log:     owner.opts.Logger.WithValues("monitor", cfg.ID, "binding", cfg.Binding),
		wanted:  wanted,
		mapping: mapping,
		objects: map[string]*entry{},
		sources: map[string]*source{},
		refused: map[string]*ForbiddenError{},
	}
}

func (mon *monitor) start() {
	mon.lifeMu.Lock()
	defer mon.lifeMu.Unlock()
	if mon.running {
		return
	}
	mon.running = true
	mon.stopCh = make(chan struct{})
	mon.mu.Lock()
	mon.active = true
	mon.mu.Unlock()
	mon.wg.Add(1)
	go func(stopCh chan struct{}) {
		defer mon.wg.Done()
		mon.run(stopCh)
	}(mon.stopCh)
}

func (mon *monitor) stop() {
	mon.lifeMu.Lock()
	defer mon.lifeMu.Unlock()
	if !mon.running {
		return
	}
	mon.mu.Lock()
	mon.active = false
	mon.synced = false
	mon.waiting = ""
	for ns, src := range mon.sources {
		src.alive = false
		delete(mon.sources, ns)
	}
	mon.objects = map[string]*entry{}
	mon.refused = map[string]*ForbiddenError{}
	mon.mu.Unlock()
	close(mon.stopCh)
	mon.wg.Wait()
	mon.running = false
}

func (mon *monitor) waitingForKind() string {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	return mon.waiting
}

func (mon *monitor) isSynced() bool {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	return mon.synced
}

// run waits for the kind, starts the informers, waits for the initial list
// and sends the Synchronization event.
func (mon *monitor) run(stopCh chan struct{}) {
	ctx := wait.ContextForChannel(stopCh)
	mapping := mon.waitForKind(ctx)
	if mapping == nil {
		return
	}
	namespaced := mapping.Scope.Name() == meta.RESTScopeNameNamespace
	nsSel := mon.cfg.Namespace
	switch {
	case namespaced && nsSel != nil && nsSel.LabelSelector != nil:
		if !mon.watchNamespaces(ctx, stopCh) {
			return
		}
	case namespaced && nsSel != nil && len(nsSel.MatchNames) > 0:
		for _, ns := range nsSel.MatchNames {
			mon.addSource(ctx, mapping, ns)
		}
	default:
		if !namespaced && nsSel != nil {
			mon.log.Info("namespace selector ignored: the kind is cluster-scoped", "kind", mapping.GroupVersionKind.Kind)
		}
		mon.addSource(ctx, mapping, metav1.NamespaceAll)
	}

	mon.mu.Lock()
	var synced []cache.InformerSynced
	for _, src := range mon.sources {
		synced = append(synced, src.synced...)
	}
	mon.mu.Unlock()
	if !cache.WaitForCacheSync(stopCh, synced...) {
		return
	}

	mon.mu.Lock()
	defer mon.mu.Unlock()
	if !mon.active {
		return
	}
	mon.synced = true
	if mon.cfg.ExecuteHookOnSynchronization {
		mon.owner.enqueue(Event{
			MonitorID: mon.cfg.ID,
			Binding:   mon.cfg.Binding,
			Type:      TypeSynchronization,
			Objects:   mon.snapshotLocked(),
		})
	}
}

// waitForKind returns the kind's mapping, retrying discovery with backoff
// while the kind is not served. Nil when stopped first.
func (mon *monitor) waitForKind(ctx context.Context) *meta.RESTMapping {
	mon.mu.Lock()
	mapping := mon.mapping
	mon.mu.Unlock()
	if mapping != nil {
		return mapping
	}
	delay := mon.owner.opts.KindRetryMin
	for {
		m, err := mon.owner.resolver.resolve(mon.cfg.APIVersion, mon.cfg.Kind)
		if err == nil {
			mon.log.Info("kind is served now; starting to watch", "apiVersion", mon.cfg.APIVersion, "kind", mon.cfg.Kind)
			mon.mu.Lock()
			mon.mapping = m
			mon.waiting = ""
			mon.mu.Unlock()
			return m
		}
		if ctx.Err() != nil {
			return nil
		}
		mon.mu.Lock()
		if mon.active {
			mon.waiting = err.Error()
		}
		mon.mu.Unlock()
		var ke *UnknownKindError
		if errors.As(err, &ke) && !ke.MayAppearLater() {
			// The group appeared without the kind or version the binding
			// names: most likely a typo, which waiting will not cure.
			mon.log.Error(err, "waiting for kind to be served, but its API group is served without it", "apiVersion", mon.cfg.APIVersion, "kind", mon.cfg.Kind, "retryIn", delay.String())
		} else {
			mon.log.Info("waiting for kind to be served", "apiVersion", mon.cfg.APIVersion, "kind", mon.cfg.Kind, "retryIn", delay.String(), "reason", err.Error())
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay *= 2
		if delay > mon.owner.opts.KindRetryMax {
			delay = mon.owner.opts.KindRetryMax
		}
	}
}

// watchNamespaces follows the namespaces that match the binding's namespace
// label selector (and names, when both are given), adding and dropping a
// source per namespace. It returns after the namespaces' initial list, false
// when stopped first.
func (mon *monitor) watchNamespaces(ctx context.Context, stopCh chan struct{}) bool {
	nsSel := mon.cfg.Namespace
	sel := labelSelector(nsSel.LabelSelector)
	names := map[string]bool{}
	for _, n := range nsSel.MatchNames {
		names[n] = true
	}
	matches := func(obj any) (string, bool) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return "", false
		}
		if len(names) > 0 && !names[u.GetName()] {
			return u.GetName(), false
		}
		return u.GetName(), sel.Matches(labelsSet(u.GetLabels()))
	}
	lw := mon.listWatch(mon.dynamic.Resource(namespacesGVR),
		access{key: "namespaces", resource: "namespaces", clusterScoped: true},
		func(o *metav1.ListOptions) { o.LabelSelector = sel.String() })
	inf := cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	mon.setWatchErrorHandler(inf, "namespaces")
	mapping := func() *meta.RESTMapping {
		mon.mu.Lock()
		defer mon.mu.Unlock()
		return mon.mapping
	}()
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if name, ok := matches(obj); ok {
				mon.addSource(ctx, mapping, name)
			}
		},
		UpdateFunc: func(_, obj any) {
			name, ok := matches(obj)
			switch {
			case ok:
				mon.addSource(ctx, mapping, name)
			case name != "":
				mon.dropSource(name)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				mon.dropSource(u.GetName())
			}
		},
	})
	if err != nil {
		mon.log.Error(err, "watch namespaces")
		return false
	}
	mon.wg.Add(1)
	go func() {
		defer mon.wg.Done()
		inf.RunWithContext(ctx)
	}()
	return cache.WaitForCacheSync(stopCh, reg.HasSynced)
}

// addSource starts informers for one namespace: one, or one per name of
// the binding's nameSelector. Adding an existing namespace does nothing.
func (mon *monitor) addSource(ctx context.Context, mapping *meta.RESTMapping, namespace string) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if !mon.active || mon.sources[namespace] != nil {
		return
	}
	src := &source{namespace: namespace, stopCh: make(chan struct{}), alive: true}
	names := mon.cfg.NameSelector
	if len(names) == 0 {
		names = []string{""}
	}
	var infs []cache.SharedIndexInformer
	for _, name := range names {
		inf := mon.newInformer(mapping, namespace, name)
		reg, err := inf.AddEventHandler(mon.handler(src))
		if err != nil {
			mon.log.Error(err, "add event handler", "namespace", namespace)
			continue
		}
		src.synced = append(src.synced, reg.HasSynced)
		infs = append(infs, inf)
	}
	mon.sources[namespace] = src
	srcCtx, cancel := context.WithCancel(ctx)
	mon.wg.Add(1)
	go func() {
		defer mon.wg.Done()
		defer cancel()
		select {
		case <-src.stopCh:
		case <-srcCtx.Done():
		}
	}()
	for _, inf := range infs {
		mon.wg.Add(1)
		go func() {
			defer mon.wg.Done()
			inf.RunWithContext(srcCtx)
		}()
	}
}

// dropSource stops watching a namespace that no longer matches and removes
// its objects from the snapshot without events.
func (mon *monitor) dropSource(namespace string) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	src := mon.sources[namespace]
	if src == nil {
		return
	}
	src.alive = false
	delete(mon.sources, namespace)
	delete(mon.refused, namespace+" list")
	delete(mon.refused, namespace+" watch")
	close(src.stopCh)
	for k, e := range mon.objects {
		if e.namespace == namespace {
			delete(mon.objects, k)
		}
	}
}

func (mon *monitor) newInformer(mapping *meta.RESTMapping, namespace, name string) cache.SharedIndexInformer {
	ri := mon.dynamic.Resource(mapping.Resource).Namespace(namespace)
	labelSel := labelSelector(mon.cfg.LabelSelector).String()
	fieldSel := mon.cfg.FieldSelector
	if name != "" {
		sel := fields.OneTermEqualSelector("metadata.name", name)
		if user, err := fields.ParseSelector(fieldSel); err == nil && fieldSel != "" {
			sel = fields.AndSelectors(sel, user) // validated in AddMonitor
		}
		fieldSel = sel.String()
	}
	tweak := func(o *metav1.ListOptions) {
		o.LabelSelector = labelSel
		o.FieldSelector = fieldSel
	}
	lw := mon.listWatch(ri, access{key: namespace, resource: mapping.Resource.GroupResource().String(), namespace: namespace,
		clusterScoped: mapping.Scope.Name() != meta.RESTScopeNameNamespace}, tweak)
	inf := cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, mon.cfg.ResyncPeriod, cache.Indexers{})
	mon.setWatchErrorHandler(inf, mapping.Resource.String())
	return inf
}

// listWatch lists and watches ri with tweak applied to the options, and
// records what the API server refuses (observe).
func (mon *monitor) listWatch(ri dynamic.ResourceInterface, a access, tweak func(*metav1.ListOptions)) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			obj, err := ri.List(ctx, o)
			mon.observe("list", a, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			w, err := ri.Watch(ctx, o)
			mon.observe("watch", a, err)
			return w, err
		},
	}
}

func (mon *monitor) setWatchErrorHandler(inf cache.SharedIndexInformer, what string) {
	log := mon.log
	_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		log.Info("watch failed; retrying", "resource", what, "error", err.Error())
	})
}

func (mon *monitor) handler(src *source) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { mon.upsert(src, obj) },
		UpdateFunc: func(_, obj any) { mon.upsert(src, obj) },
		DeleteFunc: func(obj any) { mon.remove(src, obj) },
	}
}

func objectKey(namespace, name string) string { return namespace + "/" + name }

func (mon *monitor) upsert(src *source, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	e := &entry{namespace: u.GetNamespace(), name: u.GetName()}
	if mon.filter != nil {
		res, err := mon.filter.run(u.Object)
		if err != nil {
			mon.log.Error(err, "jqFilter failed; object ignored", "namespace", e.namespace, "name", e.name)
			return
		}
		e.result, e.sum = res, checksum(res)
	} else {
		e.sum = checksum([]byte(u.GetResourceVersion()))
	}
	if mon.cfg.KeepFullObjectsInMemory {
		e.object = u
	}
	key := objectKey(e.namespace, e.name)

	mon.mu.Lock()
	defer mon.mu.Unlock()
	if !src.alive {
		return
	}
	old, had := mon.objects[key]
	mon.objects[key] = e
	if !mon.synced {
		return
	}
	ev := WatchEventAdded
	if had {
		if old.sum == e.sum {
			return
		}
		ev = WatchEventModified
	}
	if mon.wanted[ev] {
		mon.emitLocked(ev, u, e.result)
	}
}

func (mon *monitor) remove(src *source, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := objectKey(u.GetNamespace(), u.GetName())
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if !src.alive {
		return
	}
	old, had := mon.objects[key]
	if !had {
		return
	}
	delete(mon.objects, key)
	if mon.synced && mon.wanted[WatchEventDeleted] {
		mon.emitLocked(WatchEventDeleted, u, old.result)
	}
}

// emitLocked queues an Event; mon.mu must be held so that events leave in
// the order the snapshot changed.
func (mon *monitor) emitLocked(ev WatchEvent, u *unstructured.Unstructured, result json.RawMessage) {
	mon.owner.enqueue(Event{
		MonitorID:  mon.cfg.ID,
		Binding:    mon.cfg.Binding,
		Type:       TypeEvent,
		WatchEvent: ev,
		Objects:    []ObjectAndFilterResult{{Object: u.DeepCopy(), FilterResult: result}},
	})
}

func (mon *monitor) snapshot() []ObjectAndFilterResult {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	return mon.snapshotLocked()
}

func (mon *monitor) snapshotLocked() []ObjectAndFilterResult {
	entries := make([]*entry, 0, len(mon.objects))
	for _, e := range mon.objects {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].namespace != entries[j].namespace {
			return entries[i].namespace < entries[j].namespace
		}
		return entries[i].name < entries[j].name
	})
	out := make([]ObjectAndFilterResult, len(entries))
	for i, e := range entries {
		out[i].FilterResult = e.result
		if e.object != nil {
			out[i].Object = e.object.DeepCopy()
		}
	}
	return out
}

func (mon *monitor) String() string { return fmt.Sprintf("monitor %s", mon.cfg.ID) }
