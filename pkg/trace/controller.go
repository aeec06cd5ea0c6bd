package trace

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/filter"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/limiter"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// NodeIndex is the field index of Traces by spec.node.
const NodeIndex = "spec.node"

// Controller is the node-local Trace controller. Create it with New and
// register it with SetupWithManager; it is then driven by the manager.
type Controller struct {
	opts   Options
	ownHub bool // opts.Hub was made by New: Start stops it
	log    logr.Logger
	rt     *gadget.Runtime
	// enrich is the runtime's enricher, told of the node's /proc scans
	enrich *enricher.Stage
	pods   *pods
	cron   *cron.Crontab

	gadgets  gadgets
	locks    keyedMutex    // per Trace: status writes
	progress *rate.Limiter // progress writes of the whole node
	ownStore bool          // opts.Store was opened by New: cacheGC collects it

	// ready is closed once the Runnable started: runs need its context.
	ready chan struct{}
	// wg counts every goroutine the controller starts: gadget runs,
	// subscriber owners, schedule ticks. The Runnable waits for it.
	wg sync.WaitGroup

	mu sync.Mutex
	// Guarded by mu.
	runCtx   context.Context
	stopping bool
	runs     map[runKey]*sharedRun // shared runs by program and params
	byID     map[string]*sharedRun // every run, by run id
	active   map[types.NamespacedName]*subscriber
	seen     map[types.NamespacedName]bool   // Traces reconciled since start
	sched    map[types.NamespacedName]string // schedule registered per Trace
	skipped  map[types.NamespacedName]uint64 // skipped ticks already in status
	subDirty map[types.NamespacedName]bool   // packages whose subscriptions changed
	subWake  chan struct{}                   // capacity 1: subDirty grew
	// mntnsWake (capacity 1, not guarded) asks syncMntNs to look again
	mntnsWake chan struct{}
	// progressSlots bounds the progress writes in flight (capacity).
	progressSlots chan struct{}
}

// New returns a Controller; it starts nothing.
func New(opts Options) (*Controller, error) {
	ownStore := opts.Store == nil
	ownHub, err := opts.setDefaults()
	if err != nil {
		return nil, err
	}
	c := &Controller{
		opts: opts, ownHub: ownHub, ownStore: ownStore, log: opts.Logger, pods: newPods(),
		progress: rate.NewLimiter(rate.Limit(opts.ProgressRate), max(1, int(opts.ProgressRate))), cron: cron.New(cron.Options{}),
		gadgets: gadgets{byID: map[string]*loaded{}}, ready: make(chan struct{}),
		runs: map[runKey]*sharedRun{}, byID: map[string]*sharedRun{}, active: map[types.NamespacedName]*subscriber{},
		seen: map[types.NamespacedName]bool{}, sched: map[types.NamespacedName]string{},
		skipped: map[types.NamespacedName]uint64{}, subDirty: map[types.NamespacedName]bool{},
		subWake: make(chan struct{}, 1), progressSlots: make(chan struct{}, 4), mntnsWake: make(chan struct{}, 1),
	}
	c.enrich = enricher.New(enricher.Options{Pods: c.pods, ProcRoot: opts.ProcRoot})
	rt, err := gadget.New(
		ebpfstage.New(ebpfstage.Options{}),
		c.enrich,
		filter.Stage{},
		limiter.Stage{},
		fanout{c: c},
	)
	if err != nil {
		return nil, fmt.Errorf("create trace controller: %w", err)
	}
	c.rt = rt
	return c, nil
}

// SetupWithManager registers the spec.node field index, the Trace
// reconciler (watching Traces of this node, GadgetPackages and, as
// metadata, Namespaces), an informer
// on this node's Pods, and the Runnable that owns running gadgets and
// schedules. All of them run on every replica (NeedLeaderElection is
// false), whatever the Lease says.
func (c *Controller) SetupWithManager(mgr manager.Manager) error {
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &gadgetv1alpha1.Trace{}, NodeIndex, func(o client.Object) []string {
		return []string{o.(*gadgetv1alpha1.Trace).Spec.Node}
	}); err != nil {
		return fmt.Errorf("set up trace controller: index traces by spec.node: %w", err)
	}
	podCache, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: c.opts.Scheme, Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Field: fields.OneTermEqualSelector("spec.nodeName", c.opts.NodeName), Transform: slimPod},
		},
	})
	if err != nil {
		return fmt.Errorf("set up trace controller: pod cache: %w", err)
	}
	inf, err := podCache.GetInformer(ctx, &corev1.Pod{}, cache.BlockUntilSynced(false))
	if err != nil {
		return fmt.Errorf("set up trace controller: pod informer: %w", err)
	}
	if _, err := inf.AddEventHandler(c.pods.handler()); err != nil {
		return fmt.Errorf("set up trace controller: pod informer: %w", err)
	}
	if err := mgr.Add(podCache); err != nil {
		return fmt.Errorf("set up trace controller: %w", err)
	}
	if err := mgr.Add(runnable{c}); err != nil {
		return fmt.Errorf("set up trace controller: %w", err)
	}
	if err := c.addCacheGC(mgr); err != nil {
		return fmt.Errorf("set up trace controller: %w", err)
	}
	ours := func(o client.Object) bool {
		tr, ok := o.(*gadgetv1alpha1.Trace)
		if !ok {
			return false
		}
		return tr.Spec.Node == c.opts.NodeName || tr.Annotations[gadgetv1alpha1.OperationAnnotation] != ""
	}
	// a Trace moved away from this node is still ours to stop
	mine := predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return ours(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return ours(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return ours(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return ours(e.ObjectOld) || ours(e.ObjectNew) },
	}
	// the node's own status writes need no reconcile: only the spec, the
	// operation annotation, deletion and the finalizer do
	traceChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*gadgetv1alpha1.Trace)
		n, okN := e.ObjectNew.(*gadgetv1alpha1.Trace)
		if !okO || !okN {
			return true
		}
		return o.Generation != n.Generation ||
			o.Annotations[gadgetv1alpha1.OperationAnnotation] != n.Annotations[gadgetv1alpha1.OperationAnnotation] ||
			o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() ||
			controllerutil.ContainsFinalizer(o, gadgetv1alpha1.TraceFinalizer) != controllerutil.ContainsFinalizer(n, gadgetv1alpha1.TraceFinalizer)
	}}
	// a package matters to Traces when it starts or stops serving them,
	// not when the nodes' subscriptions change
	packageChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*v1alpha1.GadgetPackage)
		n, okN := e.ObjectNew.(*v1alpha1.GadgetPackage)
		if !okO || !okN {
			return true
		}
		return packageRunning(o) != packageRunning(n)
	}}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("trace-"+c.opts.NodeName).
		// the node role runs on every replica, whoever holds the Lease
		WithOptions(controller.Options{MaxConcurrentReconciles: c.opts.Workers, NeedLeaderElection: new(false)}).
		For(&gadgetv1alpha1.Trace{}, builder.WithPredicates(mine, traceChanged)).
		Watches(&v1alpha1.GadgetPackage{}, handler.EnqueueRequestsFromMapFunc(c.tracesOfPackage), builder.WithPredicates(packageChanged)).
		// a namespace losing the privileged-traces label stops the
		// node-wide runs of its Traces (checkConfinement)
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(c.tracesOfNamespace), builder.OnlyMetadata, builder.WithPredicates(privilegeChanged())).
		Complete(c)
	if err != nil {
		return fmt.Errorf("set up trace controller: %w", err)
	}
	return nil
}

// tracesOfPackage maps a GadgetPackage to the Traces of this node that
// may name it.
func (c *Controller) tracesOfPackage(ctx context.Context, o client.Object) []reconcile.Request {
	gp, ok := o.(*v1alpha1.GadgetPackage)
	if !ok {
		return nil
	}
	var list gadgetv1alpha1.TraceList
	if err := c.opts.Client.List(ctx, &list, client.MatchingFields{NodeIndex: c.opts.NodeName}); err != nil {
		c.log.Error(err, "list traces of package", "package", gp.Namespace+"/"+gp.Name)
		return nil
	}
	var out []reconcile.Request
	for _, tr := range list.Items {
		g := tr.Spec.Gadget
		if g == gp.Name || g == gp.Namespace+"/"+gp.Name || g == gp.Spec.Package {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}})
		}
	}
	return out
}

// runnable owns the running gadgets and the schedules.
type runnable struct{ c *Controller }

var (
	_ manager.Runnable               = runnable{}
	_ manager.LeaderElectionRunnable = runnable{}
)

// NeedLeaderElection is false: every replica runs its node's Traces.
func (runnable) NeedLeaderElection() bool { return false }

// Start runs the schedules until ctx ends, then stops every run on the
// node, writing each one's outcome to status, and waits for them.
func (r runnable) Start(ctx context.Context) error {
	c := r.c
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("trace controller: already started")
	}
	c.runCtx = ctx
	c.mu.Unlock()
	close(c.ready)

	cronDone := make(chan error, 1)
	go func() { cronDone <- c.cron.Start(ctx) }()
	subCtx, stopSubs := context.WithCancel(context.WithoutCancel(ctx))
	subsDone := make(chan struct{})
	go c.syncSubscriptions(subCtx, subsDone)
	mntnsDone := make(chan struct{})
	go c.syncMntNs(subCtx, mntnsDone)
	func() {
		for {
			select {
			case <-ctx.Done():
				return
			case t, ok := <-c.cron.Triggers():
				if !ok {
					return
				}
				c.wg.Add(1)
				go c.tick(t)
			}
		}
	}()

	c.mu.Lock()
	c.stopping = true
	subs := make([]*subscriber, 0, len(c.active))
	for _, s := range c.active {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.requestStop(reasonShutdown, "")
	}
	// Ticks handed over before ctx ended finish (as shutdown) and mark
	// their triggers done, which the crontab's Stop waits for.
	c.wg.Wait()
	// the runs are gone: their subscriptions go too, before the process
	stopSubs()
	<-subsDone
	<-mntnsDone
	c.flushSubscriptions()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := c.cron.Stop(stopCtx)
	<-cronDone
	if c.ownHub {
		c.opts.Hub.Stop()
	}
	if err != nil {
		return fmt.Errorf("trace controller: stop schedules: %w", err)
	}
	return nil
}

// waitReady waits for the Runnable; false when ctx ends first.
func (c *Controller) waitReady(ctx context.Context) bool {
	select {
	case <-c.ready:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *Controller) activeSub(key types.NamespacedName) *subscriber {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active[key]
}

// Reconcile brings one Trace's run in line with its spec, its package and
// its operation annotation. A reconcile cut short by the process's stop
// is no error (a clean stop logs none): what it did not finish, the
// operation annotation still asks for at the next start.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := c.reconcile(ctx, req)
	if err != nil && ctx.Err() != nil {
		return reconcile.Result{}, nil
	}
	return res, err
}

func (c *Controller) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := req.NamespacedName
	var tr gadgetv1alpha1.Trace
	if err := c.opts.Client.Get(ctx, key, &tr); err != nil {
		if apierrors.IsNotFound(err) {
			c.forget(key)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if tr.Spec.Node != c.opts.NodeName {
		if s := c.activeSub(key); s != nil {
			s.requestStop(reasonStop, "")
			<-s.finished
		}
		return reconcile.Result{}, c.foreignNode(ctx, &tr)
	}
	if !c.waitReady(ctx) {
		return reconcile.Result{}, nil
	}
	if !tr.DeletionTimestamp.IsZero() {
		if s := c.activeSub(key); s != nil {
			s.requestStop(reasonDeleted, "")
			<-s.finished
		}
		c.forget(key)
		if err := c.removeOutput(ctx, &tr); err != nil {
			// not retried: the Trace's deletion does not wait for its file
			c.log.Error(err, "File output of a deleted Trace left on the node")
		}
		if controllerutil.ContainsFinalizer(&tr, gadgetv1alpha1.TraceFinalizer) {
			before := tr.DeepCopy()
			controllerutil.RemoveFinalizer(&tr, gadgetv1alpha1.TraceFinalizer)
			if err := c.opts.Client.Patch(ctx, &tr, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
				return reconcile.Result{}, client.IgnoreNotFound(err)
			}
		}
		return reconcile.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(&tr, gadgetv1alpha1.TraceFinalizer) {
		before := tr.DeepCopy()
		controllerutil.AddFinalizer(&tr, gadgetv1alpha1.TraceFinalizer)
		if err := c.opts.Client.Patch(ctx, &tr, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}

	// a running Trace whose package stopped serving Traces stops
	if s := c.activeSub(key); s != nil {
		if why := c.packageProblem(ctx, &tr); why != "" {
			s.requestStop(reasonPackage, why)
			<-s.finished
		}
	}
	if err := c.checkConfinement(ctx, &tr); err != nil {
		return reconcile.Result{}, err
	}

	c.mu.Lock()
	first := !c.seen[key]
	c.seen[key] = true
	c.mu.Unlock()
	if first {
		if err := c.recover(ctx, &tr); err != nil {
			return reconcile.Result{}, err
		}
	}
	if err := c.syncSchedule(ctx, &tr); err != nil {
		return reconcile.Result{}, err
	}
	if tr.Annotations[gadgetv1alpha1.OperationAnnotation] == "" {
		return reconcile.Result{}, nil
	}
	// act on the API server's version, never on a cache that has not
	// seen our own last writes yet
	fresh := &gadgetv1alpha1.Trace{}
	if err := c.opts.APIReader.Get(ctx, key, fresh); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	op := fresh.Annotations[gadgetv1alpha1.OperationAnnotation]
	if op == "" || !fresh.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	keep, err := c.perform(ctx, fresh, op)
	if err != nil {
		return reconcile.Result{}, err
	}
	if keep {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, c.removeAnnotation(ctx, key, op)
}

// packageProblem says why the Trace's package cannot serve it now, or "".
func (c *Controller) packageProblem(ctx context.Context, tr *gadgetv1alpha1.Trace) string {
	gp, err := c.findPackage(ctx, tr)
	if err != nil {
		return err.Error()
	}
	if gp == nil {
		return fmt.Sprintf("package %s was removed", tr.Spec.Gadget)
	}
	if why := packageRunning(gp); why != "" {
		return why
	}
	return ""
}

// forget drops what the controller keeps of a Trace that is gone.
func (c *Controller) forget(key types.NamespacedName) {
	c.cron.RemoveOwner(key.String())
	c.mu.Lock()
	delete(c.seen, key)
	delete(c.sched, key)
	delete(c.skipped, key)
	s := c.active[key]
	c.mu.Unlock()
	if s != nil {
		s.requestStop(reasonDeleted, "")
		<-s.finished
	}
}

// foreignNode reports an operation on a Trace whose spec.node is not a
// node this controller may serve: without NodeCheck any other name; with
// it, a name no Node has. Traces of other existing nodes are theirs.
func (c *Controller) foreignNode(ctx context.Context, tr *gadgetv1alpha1.Trace) error {
	op := tr.Annotations[gadgetv1alpha1.OperationAnnotation]
	if op == "" {
		return nil
	}
	var msg string
	if c.opts.NodeCheck {
		// Metadata only: whether the Node exists is all this needs, and a
		// Node's spec and status are what every node would otherwise
		// cache of every Node.
		node := &metav1.PartialObjectMetadata{}
		node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
		err := c.opts.Client.Get(ctx, types.NamespacedName{Name: tr.Spec.Node}, node)
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		msg = fmt.Sprintf("spec.node %q: no such Node in the cluster; set spec.node to a node's name (kubectl get nodes)", tr.Spec.Node)
	} else {
		msg = fmt.Sprintf("spec.node %q: this operator serves node %q only; set spec.node to %q", tr.Spec.Node, c.opts.NodeName, c.opts.NodeName)
	}
	key := types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}
	if err := c.setError(ctx, key, op, errors.New(msg)); err != nil {
		return err
	}
	return c.removeAnnotation(ctx, key, op)
}

// keyedMutex is a set of mutexes by key, created on demand and never
// freed (one per Trace or package the node has seen: small).
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*sync.Mutex{}
	}
	l, ok := k.m[key]
	if !ok {
		l = &sync.Mutex{}
		k.m[key] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// RunInfo describes one gadget run loaded on the node.
type RunInfo struct {
	// ID of the run.
	ID string `json:"id"`
	// Package is the GadgetPackage as "<namespace>/<name>".
	Package string `json:"package"`
	// Digest of the package archive the gadget came from.
	Digest string `json:"digest"`
	// Shared is false for a snapshot, which serves one Trace.
	Shared bool `json:"shared"`
	// Traces subscribed to it, as "<namespace>/<name>", sorted.
	Traces []string `json:"traces"`
	// Records the gadget delivered so far, before each Trace's container
	// filter: with the kernel's mount-namespace filter on, only the
	// selected containers' events.
	Records int64 `json:"records"`
	// MntNs are the mount namespaces the gadget's kernel filter lets
	// through, when the run filters by mount namespace in the kernel
	// (Inspektor Gadget's ABI); the node keeps them in step with the
	// containers its Traces select.
	MntNs []uint64 `json:"mntns,omitempty"`
	// Outputs holds, per Trace of Traces, what its output took so far in
	// this run: live, so that a run whose output is only written at its
	// end (ExternalResource) or off the API server (File, Stream) shows
	// that events flow.
	Outputs map[string]OutputInfo `json:"outputs,omitempty"`
}

// OutputInfo counts one Trace's output in a run, as output.Stats does.
type OutputInfo struct {
	// Mode is the Trace's spec.outputMode.
	Mode gadgetv1alpha1.OutputMode `json:"mode"`
	// Events the output accepted in this run.
	Events int64 `json:"events"`
	// Dropped events the output accepted but no longer holds or could not
	// deliver (its bound, a slow stream reader).
	Dropped int64 `json:"dropped"`
}

// Runs lists the gadget runs loaded on the node, for dumps and tests.
func (c *Controller) Runs() []RunInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]RunInfo, 0, len(c.byID))
	for _, r := range c.byID {
		ri := RunInfo{ID: r.id, Package: r.pkg.String(), Digest: r.key.digest, Shared: r.shared, Records: r.records.Load()}
		if f := r.mntns.Load(); f != nil {
			ri.MntNs = f.IDs()
		}
		for _, s := range r.subscribers() {
			ri.Traces = append(ri.Traces, s.key.String())
			st := s.sink.Stats()
			if ri.Outputs == nil {
				ri.Outputs = map[string]OutputInfo{}
			}
			ri.Outputs[s.key.String()] = OutputInfo{Mode: s.mode, Events: st.Events, Dropped: st.Dropped}
		}
		sort.Strings(ri.Traces)
		out = append(out, ri)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
