// Package gadgetpackage runs the GadgetPackage controller: it turns each
// GadgetPackage into the package manager's tasks in the package's main
// queue, and writes status (phase, enablement, version, digest, hooks,
// catalog; conditions Ready, Reconciling, Stalled and, with drift
// detection, Drifted; observedGeneration) and Events.
//
// After a task used its attempt limit the package is Stalled with the
// error, and the rest of that plan does not run; a spec change (a new
// metadata.generation), a new value of the gadgetpm.io/retry annotation or
// a change of the gadgetpm.io/adopt-release annotation re-arms it. What
// counts as new is what the controller itself last acted on, kept in
// memory, never the status it wrote: its cache may not have seen that
// write yet. Deleting a GadgetPackage runs Remove (the finalizer
// gadgetpm.io/package) and is refused, with a message naming them, while
// other packages require it.
//
// Status is what survives the process: before its first reconcile acts,
// the controller restores every GadgetPackage with the finalizer from its
// status (Manager.Restore; what it last acted on, the failure counts,
// Stalled), so that a package deleted or changed while no operator ran is
// removed or upgraded from what was installed. status.lastAttempt, written
// before each lifecycle task, tells the next start which task a crash cut
// short.
//
// The queue service's Events belong to its owner, which passes them to
// HandleEvent.
package gadgetpackage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler"
)

// Queue is what the controller needs of the queue service.
type Queue interface {
	Enqueue(queueName string, t queue.Task, opts ...queue.EnqueueOption) error
	Remove(ctx context.Context, queueName string) error
}

// EventRecorder records Kubernetes Events.
type EventRecorder interface {
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...interface{})
}

// DefaultMaxAttempts is how often a lifecycle task runs before the
// package is Stalled.
const DefaultMaxAttempts = 5

// Options configure a Reconciler.
type Options struct {
	// Client reads GadgetPackages and writes their status. Required.
	Client client.Client
	// Manager holds package state. Required.
	Manager *manager.Manager
	// Queue runs the tasks. Required.
	Queue Queue
	// Recorder receives Events; nil records none.
	Recorder EventRecorder
	// MaxAttempts per task. Default DefaultMaxAttempts.
	MaxAttempts int
	// RemoveGrace is how long a task still running in a removed package's
	// queues may take before it is cancelled. Default DefaultRemoveGrace.
	RemoveGrace time.Duration
	// HookStatusInterval bounds how long status.hooks may lag behind the
	// hooks' runs, and how often runs alone cause a status write per
	// package. Default DefaultHookStatusInterval.
	HookStatusInterval time.Duration
	// BackoffBase and BackoffCap pace the retry of a package whose task
	// was cut short by a crash of the operator (status.lastAttempt set at
	// start): BackoffBase doubled per consecutive failure, capped. Default
	// the queue's, queue.DefaultBackoffBase and queue.DefaultBackoffCap.
	BackoffBase, BackoffCap time.Duration
}

// DefaultRemoveGrace bounds the wait for running tasks when a package's
// queues are removed.
const DefaultRemoveGrace = 30 * time.Second

// DefaultHookStatusInterval is Options.HookStatusInterval's default: a
// package whose hooks run every second gets one status write every 3
// seconds, not one per run, and its status.hooks is at most that old.
const DefaultHookStatusInterval = 3 * time.Second

// pkgRun is the controller's bookkeeping of one package; guarded by
// Reconciler.mu.
type pkgRun struct {
	scope    context.Context    // of the current plan's tasks
	cancel   context.CancelFunc // ends scope
	inflight bool               // tasks of the current plan are queued
	failure  error              // the current plan's task that failed for good
	failedAt string             // its task name
	attempts int                // how often it ran
	removing bool               // the Remove tasks are queued
	removed  bool               // the Remove tasks finished
	plan     int                // counts plans; OnDone of an older one is ignored
	// settled: this process's state of the package reached Running, or
	// its plan failed; until then a Running status is adopted, not ours.
	settled bool
	// stepFailed is the current plan's step that ran last, if its attempt
	// failed. A step stays at the head of the queue while it is retried,
	// so when another step of the plan starts, that one was given up on.
	stepFailed *planStep
	// broken: a step of the current plan was given up on; its later steps
	// do nothing and its OnDone is not acted on. The queue's Failed event
	// records the failure (HandleEvent), maybe after they ran.
	broken bool
	// What the last reconcile acted on, to tell a change from the
	// controller's own status writes, which the cache may not have seen.
	generation int64  // metadata.generation
	retry      string // the retry annotation
	adopt      string // the adopt-release annotation
	// releaseAttempts, when not 0, is the attempt limit of the task that
	// installs or upgrades the release: spec.install.remediation.retries
	// (no release yet) or spec.upgrade.remediation.retries, plus one.
	releaseAttempts int
	// Consecutive failed attempts since the last success, in all and per
	// phase (status.failures, installFailures, upgradeFailures,
	// hookFailures); restored from status at start.
	failures, installFailures, upgradeFailures, hookFailures int64
	// attemptWritten: status.lastAttempt was written (recordAttempt) and
	// not cleared since; the next status write clears it.
	attemptWritten bool
	// retryAt: no plan before this time (a crashed attempt's backoff).
	retryAt time.Time
}

// stall is a Stalled condition the controller did not derive from a task
// of its own: one restored from status, or the crash-loop protection's.
type stall struct {
	reason      string // of the Stalled condition
	readyReason string // of the Ready condition
	msg         string
}

func (s *stall) Error() string { return s.msg }

// resetFailures forgets the consecutive failures: a success, a spec
// change or a new retry value.
func (run *pkgRun) resetFailures() {
	run.failures, run.installFailures, run.upgradeFailures, run.hookFailures = 0, 0, 0, 0
	run.retryAt = time.Time{}
}

// countFailure counts one failed attempt of task (its queue name, "<kind>
// <key>") that ended with err (nil: cut short by a crash); installed says
// whether the package has a Helm release.
func (run *pkgRun) countFailure(task string, err error, installed bool) {
	run.failures++
	kind, _, _ := strings.Cut(task, " ")
	switch {
	case fetch.ReasonOf(err, "") == v1alpha1.ReasonHookFailed || (err == nil && kind == "startup"):
		run.hookFailures++
	case installed || kind == "disable" || kind == "uninstall" || kind == "restore":
		run.upgradeFailures++
	default:
		run.installFailures++
	}
}

// Reconciler is the GadgetPackage controller.
type Reconciler struct {
	opts    Options
	trigger chan event.GenericEvent
	// hookKick wakes flushHookRuns when a package's hook runs wait for a
	// status write; capacity 1, never blocks a sender.
	hookKick chan struct{}

	mu sync.Mutex
	// runs by package key; guarded by mu.
	runs map[string]*pkgRun
	// hookRuns are the keys of packages whose hooks ran since their status
	// was last asked for; guarded by mu.
	hookRuns map[string]bool

	// restoreMu serializes restoreAll; restored (guarded by it) says it
	// ran.
	restoreMu sync.Mutex
	restored  bool
}

// New returns a Reconciler.
func New(opts Options) (*Reconciler, error) {
	if opts.Client == nil || opts.Manager == nil || opts.Queue == nil {
		return nil, fmt.Errorf("create GadgetPackage controller: Client, Manager and Queue are required")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.RemoveGrace <= 0 {
		opts.RemoveGrace = DefaultRemoveGrace
	}
	if opts.HookStatusInterval <= 0 {
		opts.HookStatusInterval = DefaultHookStatusInterval
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = queue.DefaultBackoffBase
	}
	if opts.BackoffCap < opts.BackoffBase {
		opts.BackoffCap = max(queue.DefaultBackoffCap, opts.BackoffBase)
	}
	return &Reconciler{opts: opts, trigger: make(chan event.GenericEvent, 1024), hookKick: make(chan struct{}, 1),
		runs: map[string]*pkgRun{}, hookRuns: map[string]bool{}}, nil
}

// SetupWithManager registers the controller, and the writer of hook runs
// to status (flushHookRuns) as a Runnable of mgr, on the leader.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.Add(ctrlmanager.RunnableFunc(r.flushHookRuns)); err != nil {
		return fmt.Errorf("add the GadgetPackage hook status writer: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("gadgetpackage").
		For(&v1alpha1.GadgetPackage{}).
		WatchesRawSource(source.Channel(r.trigger, &handler.EnqueueRequestForObject{})).
		// A repository sync may bring a newer version a constraint allows.
		Watches(&v1alpha1.PackageRepository{}, handler.EnqueueRequestsFromMapFunc(r.packagesOf)).
		Complete(r)
}

// packagesOf maps a PackageRepository to the GadgetPackages installing
// from it.
func (r *Reconciler) packagesOf(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.GadgetPackageList
	if err := r.opts.Client.List(ctx, &list); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, gp := range list.Items {
		if gp.Spec.Repository == o.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&gp)})
		}
	}
	return out
}

// newerVersion reports a version newer than the installed one that the
// repository's last sync lists and gp's constraint allows.
func (r *Reconciler) newerVersion(ctx context.Context, gp *v1alpha1.GadgetPackage, installed string) (string, bool) {
	if installed == "" {
		return "", false
	}
	var pr v1alpha1.PackageRepository
	if err := r.opts.Client.Get(ctx, client.ObjectKey{Name: gp.Spec.Repository}, &pr); err != nil {
		return "", false
	}
	idx := &chartrepo.Index{Packages: map[string][]chartrepo.Version{}}
	for _, p := range pr.Status.Packages {
		for _, v := range p.Versions {
			idx.Packages[p.Name] = append(idx.Packages[p.Name], chartrepo.Version{Name: p.Name, Version: v})
		}
	}
	v, err := chartrepo.Resolve(idx, gp.Spec.Package, gp.Spec.Version)
	if err != nil || v.Version == installed {
		return "", false
	}
	newer, err1 := semver.NewVersion(v.Version)
	cur, err2 := semver.NewVersion(installed)
	if err1 != nil || err2 != nil || !newer.GreaterThan(cur) {
		return "", false
	}
	return v.Version, true
}

// poke asks for key to be reconciled again; never blocks. It reports
// false when the trigger channel was full and the request was dropped.
func (r *Reconciler) poke(key string) bool {
	ns, name, ok := strings.Cut(key, ".")
	if !ok {
		return true
	}
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	select {
	case r.trigger <- event.GenericEvent{Object: gp}:
		return true
	default: // many reconciles are pending anyway
		return false
	}
}

// HandleEvent takes one queue event; the owner of the queue service calls
// it for every event.
func (r *Reconciler) HandleEvent(ev queue.Event) {
	if ev.Owner.Package == "" || ev.Owner.Custom != "" {
		return // not a package's main queue (a hook's custom queue)
	}
	key := ev.Owner.Package
	r.mu.Lock()
	run, ok := r.runs[key]
	if ok && ev.Kind == queue.Failed && run.failure == nil {
		// The rest of the plan depends on this step: drop it. (Its steps
		// that started before this event skipped their work: planStep.)
		run.failure, run.failedAt, run.attempts, run.inflight = ev.Err, ev.Task, ev.Attempts, false
		if run.cancel != nil {
			run.cancel()
		}
	}
	r.mu.Unlock()
	if ok && ev.Kind != queue.Succeeded {
		r.poke(key)
	}
}

// planDone is the OnDone of a plan's last task: the plan is no longer in
// flight, and status is written again.
func (r *Reconciler) planDone(key string) func(plan int) {
	return func(plan int) {
		r.mu.Lock()
		if run, ok := r.runs[key]; ok && run.plan == plan && !run.broken {
			run.inflight = false
			run.resetFailures()
		}
		r.mu.Unlock()
		r.poke(key)
	}
}

// HandleSchedulerEvent acts on an enablement change: a loaded package the
// scheduler enabled (its requirements now run) gets Startup and Run; a
// running one it disabled (a requirement stopped) gets Disable. A Stalled
// package is left alone until it is re-armed. Status is written either
// way, so the reason shows.
func (r *Reconciler) HandleSchedulerEvent(ev scheduler.Event) {
	key := ev.Key
	r.mu.Lock()
	run, known := r.runs[key]
	stalled := known && (run.failure != nil || run.removing || run.removed)
	r.mu.Unlock()
	if known && !stalled && ev.Flipped {
		// Enqueue fails only once the queue service stopped.
		switch {
		case ev.Enabled:
			if tasks := r.opts.Manager.PlanStart(key); len(tasks) > 0 {
				_ = r.enqueueInPlan(key, tasks)
			}
		case ev.Cause != scheduler.CauseRemoved:
			if tasks := r.opts.Manager.PlanDisable(key); len(tasks) > 0 {
				_ = r.enqueue(key, tasks, r.planDone(key))
			}
		}
	}
	if known {
		r.poke(key)
	}
}

// HookRan tells the controller that one of key's hooks ran and the
// package manager recorded it. errorChanged (the hook failed, or
// succeeded after a failure) asks for a status write at once; other runs
// are written within HookStatusInterval, coalesced: however many runs
// happen meanwhile, one write carries the newest counts and times. It
// never blocks.
func (r *Reconciler) HookRan(key string, errorChanged bool) {
	r.writeSoon(key, errorChanged)
}

// DriftChanged tells the controller that the outcome of comparing key's
// release objects with its manifest changed (Manager.RecordDrift), so
// that its Drifted condition is written. It never blocks.
func (r *Reconciler) DriftChanged(key string) {
	r.writeSoon(key, true)
}

// writeSoon asks for key's status to be written: at once when now is set
// and the controller takes the request, else within HookStatusInterval.
func (r *Reconciler) writeSoon(key string, now bool) {
	if now && r.poke(key) {
		return
	}
	r.mu.Lock()
	r.hookRuns[key] = true
	r.mu.Unlock()
	select {
	case r.hookKick <- struct{}{}:
	default: // a flush is due anyway
	}
}

// flushHookRuns runs until ctx ends: HookStatusInterval after the first
// run that waits, it asks for the status of every package whose hooks
// ran to be written. A package gets at most one such write per interval,
// and its status.hooks is at most one interval (plus a reconcile) behind
// its runs.
func (r *Reconciler) flushHookRuns(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.hookKick:
		}
		t := time.NewTimer(r.opts.HookStatusInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		r.mu.Lock()
		due := r.hookRuns
		r.hookRuns = map[string]bool{}
		r.mu.Unlock()
		var dropped []string
		for key := range due {
			if !r.poke(key) {
				dropped = append(dropped, key)
			}
		}
		if len(dropped) == 0 {
			continue
		}
		// The controller is busy: try again next interval.
		r.mu.Lock()
		for _, key := range dropped {
			r.hookRuns[key] = true
		}
		r.mu.Unlock()
		select {
		case r.hookKick <- struct{}{}:
		default:
		}
	}
}

func (r *Reconciler) run(key string) *pkgRun {
	run, ok := r.runs[key]
	if !ok {
		run = &pkgRun{}
		r.runs[key] = run
	}
	return run
}

// enqueue queues tasks under a fresh scope; the last one pokes the
// controller when it succeeds.
func (r *Reconciler) enqueue(key string, tasks []queue.Task, onDone func(plan int)) error {
	r.mu.Lock()
	run := r.run(key)
	if run.cancel != nil {
		run.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	run.scope, run.cancel, run.inflight, run.failure, run.failedAt = ctx, cancel, true, nil, ""
	run.stepFailed, run.broken = nil, false
	run.plan++
	plan := run.plan
	r.mu.Unlock()
	return r.enqueueScoped(ctx, key, plan, tasks, func() { onDone(plan) })
}

// enqueueInPlan queues tasks that join the current plan (PlanStart's):
// they run in its scope, after its queued tasks, and cancel nothing. The
// last one ends the plan again when it succeeds.
func (r *Reconciler) enqueueInPlan(key string, tasks []queue.Task) error {
	r.mu.Lock()
	run := r.run(key)
	if run.scope == nil {
		run.scope, run.cancel = context.WithCancel(context.Background())
	}
	ctx, plan := run.scope, run.plan
	run.inflight = true
	r.mu.Unlock()
	done := r.planDone(key)
	return r.enqueueScoped(ctx, key, plan, tasks, func() { done(plan) })
}

// enqueueScoped queues tasks as steps of plan in key's main queue under
// ctx; onDone runs when the last one succeeds.
func (r *Reconciler) enqueueScoped(ctx context.Context, key string, plan int, tasks []queue.Task, onDone func()) error {
	r.mu.Lock()
	releaseMax := r.run(key).releaseAttempts
	r.mu.Unlock()
	for i, t := range tasks {
		attempts := r.opts.MaxAttempts
		if rt, ok := t.(releaseTask); ok && rt.AppliesRelease() && releaseMax > 0 {
			attempts = releaseMax
		}
		opts := []queue.EnqueueOption{queue.Scope(ctx), queue.MaxAttempts(attempts), queue.OwnedBy(queue.Owner{Package: key})}
		if i == len(tasks)-1 {
			opts = append(opts, queue.OnDone(onDone))
		}
		step := &planStep{Task: t, r: r, key: key, plan: plan}
		if err := r.opts.Queue.Enqueue(queue.PackageQueueName(key, ""), step, opts...); err != nil {
			return fmt.Errorf("enqueue %s: %w", t.Name(), err)
		}
	}
	return nil
}

// releaseTask is a task that may install or upgrade the package's Helm
// release (the package manager's run and start).
type releaseTask interface{ AppliesRelease() bool }

// releaseAttempts is the attempt limit gp's remediation retries give the
// task that installs (no revision yet) or upgrades its release; 0 when
// they are not set.
func releaseAttempts(gp *v1alpha1.GadgetPackage) int {
	retries, ok := gp.Spec.UpgradeRetries()
	if gp.Status.HelmRevision == 0 {
		retries, ok = gp.Spec.InstallRetries()
	}
	if !ok {
		return 0
	}
	return retries + 1
}

// planStep is one task of a plan as queued. The queue sends its Failed
// event to the controller asynchronously and goes on at once with the
// next task; the controller's cancelling of the plan's scope comes later.
// So each step finds out itself, when it starts, whether an earlier step
// of its plan was given up on, and then does nothing: the steps depend on
// each other (no Install without a download, no Load without an
// install, no Startup of what another plan loaded).
type planStep struct {
	queue.Task
	r    *Reconciler
	key  string
	plan int
}

func (s *planStep) Execute(ctx context.Context) error {
	if !s.starts() {
		return nil
	}
	if err := s.r.recordAttempt(ctx, s.key, s.Task.Name()); err != nil {
		return err
	}
	err := s.Task.Execute(ctx)
	s.ended(ctx, err)
	if ctx.Err() != nil {
		// Cancelled by the operator itself (a newer plan, a removal, a
		// stop): no crash cut it short. The queue runs the package's next
		// step only after this one returned, so this never clears its
		// record.
		s.r.clearAttempt(s.key)
	}
	return err
}

// clearAttempt removes status.lastAttempt, best effort: a write that
// fails leaves it to be counted at the next start, the safe side.
func (r *Reconciler) clearAttempt(key string) {
	ns, name, _ := strings.Cut(key, ".")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	_ = r.opts.Client.Status().Patch(ctx, gp, client.RawPatch(types.MergePatchType, []byte(`{"status":{"lastAttempt":null}}`)))
}

// recordAttempt writes status.lastAttempt (and the failure counts so
// far) before a task runs, so that an operator that crashes in it finds,
// at its next start, which task was cut short. A GadgetPackage already
// gone needs no record.
func (r *Reconciler) recordAttempt(ctx context.Context, key, task string) error {
	ns, name, _ := strings.Cut(key, ".")
	r.mu.Lock()
	run := r.run(key)
	st := v1alpha1.GadgetPackageStatus{Failures: run.failures, InstallFailures: run.installFailures,
		UpgradeFailures: run.upgradeFailures, HookFailures: run.hookFailures,
		LastAttempt: &v1alpha1.TaskAttempt{Task: task, StartedAt: metav1.Now()}}
	run.attemptWritten = true
	r.mu.Unlock()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"lastAttempt": st.LastAttempt, "failures": st.Failures, "installFailures": st.InstallFailures,
		"upgradeFailures": st.UpgradeFailures, "hookFailures": st.HookFailures}})
	if err != nil {
		return fmt.Errorf("record the attempt of %s in status: %w", task, err)
	}
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := r.opts.Client.Status().Patch(ctx, gp, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("record the attempt of %s in the status of GadgetPackage %s/%s: %w", task, ns, name, err)
	}
	return nil
}

// starts reports whether the step may run, and marks its plan broken when
// another step of it failed last.
func (s *planStep) starts() bool {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	run, ok := s.r.runs[s.key]
	if !ok || run.plan != s.plan {
		return true // an older plan's step: the manager makes it do nothing
	}
	if run.stepFailed != nil && run.stepFailed != s {
		run.broken = true
	}
	return !run.broken
}

// ended records how an attempt of the step ended; a failure the
// operator did not cause by cancelling counts in the package's failures.
func (s *planStep) ended(ctx context.Context, err error) {
	installed := false
	if st, ok := s.r.opts.Manager.State(s.key); ok {
		installed = st.HelmRevision > 0
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if run, ok := s.r.runs[s.key]; ok && run.plan == s.plan {
		run.stepFailed = nil
		if err != nil {
			run.stepFailed = s
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				run.countFailure(s.Task.Name(), err, installed)
			}
		}
	}
}

// restoreAll makes every GadgetPackage with the finalizer known from its
// status, once, before the first reconcile of this process acts on any:
// a package deleted while no operator ran (or during a leader change) is
// then removed in full, and a Running one keeps its status.
func (r *Reconciler) restoreAll(ctx context.Context) error {
	r.restoreMu.Lock()
	defer r.restoreMu.Unlock()
	if r.restored {
		return nil
	}
	var list v1alpha1.GadgetPackageList
	if err := r.opts.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("list GadgetPackages to restore their state from status: %w", err)
	}
	for i := range list.Items {
		if controllerutil.ContainsFinalizer(&list.Items[i], v1alpha1.PackageFinalizer) {
			r.restore(ctx, &list.Items[i])
		}
	}
	r.restored = true
	return nil
}

// restore rebuilds gp's state and bookkeeping from its status: what is
// installed (Manager.Restore), what the controller acted on last, the
// failure counts, and Stalled. A task that status says was running counts
// as a failed attempt (the operator died in it): the package is retried
// after a backoff, or, at the attempt limit, Stalled.
func (r *Reconciler) restore(ctx context.Context, gp *v1alpha1.GadgetPackage) {
	key := manager.Key(gp)
	log := ctrllog.FromContext(ctx).WithValues("package", key)
	if r.opts.Manager.Restore(gp) {
		log.V(1).Info("restored package state from status", "version", gp.Status.Version, "digest", gp.Status.Digest,
			"phase", gp.Status.Phase, "helmRevision", gp.Status.HelmRevision)
	}
	installed := gp.Status.HelmRevision > 0
	s := &gp.Status
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.runs[key]; ok {
		return
	}
	run := r.run(key)
	run.generation, run.retry, run.adopt = s.ObservedGeneration, s.LastHandledRetry, gp.Annotations[v1alpha1.AdoptReleaseAnnotation]
	run.failures, run.installFailures, run.upgradeFailures, run.hookFailures = s.Failures, s.InstallFailures, s.UpgradeFailures, s.HookFailures
	if c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
		run.failure, run.settled = &stall{reason: c.Reason, readyReason: readyReason(s, c.Reason), msg: c.Message}, true
		log.Info("package was Stalled before the restart; it stays Stalled until its spec or the retry annotation changes", "message", c.Message)
	}
	if s.LastAttempt == nil {
		return
	}
	run.countFailure(s.LastAttempt.Task, nil, installed)
	run.attemptWritten = true // cleared by the next status write
	if run.failure != nil {
		return
	}
	if run.failures >= int64(r.opts.MaxAttempts) {
		msg := fmt.Sprintf("%s was running when the operator stopped, %d attempt(s) in a row: it is not tried again, as it may be what crashes the operator; "+
			"read the operator's log of those attempts, fix the cause, then change the spec or set the annotation %s", s.LastAttempt.Task, run.failures, v1alpha1.RetryAnnotation)
		run.failure, run.settled = &stall{reason: v1alpha1.ReasonCrashedInTask, readyReason: v1alpha1.ReasonCrashedInTask, msg: msg}, true
		log.Error(nil, "package Stalled: its task was cut short by the operator's stop too often", "task", s.LastAttempt.Task, "failures", run.failures)
		return
	}
	run.retryAt = time.Now().Add(r.backoff(run.failures))
	log.Info("a task of the package was cut short by the operator's stop; retrying after a backoff", "task", s.LastAttempt.Task,
		"failures", run.failures, "retryAt", run.retryAt.Format(time.RFC3339Nano))
}

// readyReason is the reason of a restored Stalled package's Ready
// condition, which says what failed, else fallback.
func readyReason(s *v1alpha1.GadgetPackageStatus, fallback string) string {
	if c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
		return c.Reason
	}
	return fallback
}

// backoff is the wait before the next attempt after failures consecutive
// failures: BackoffBase doubled per further failure, capped.
func (r *Reconciler) backoff(failures int64) time.Duration {
	d := r.opts.BackoffBase
	for i := int64(1); i < failures && d < r.opts.BackoffCap; i++ {
		d *= 2
	}
	return min(d, r.opts.BackoffCap)
}

// Reconcile plans the package's tasks and writes its status.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var gp v1alpha1.GadgetPackage
	if err := r.opts.Client.Get(ctx, req.NamespacedName, &gp); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	key := manager.Key(&gp)
	if err := r.restoreAll(ctx); err != nil {
		return reconcile.Result{}, err
	}
	if !gp.DeletionTimestamp.IsZero() {
		return r.remove(ctx, &gp, key)
	}
	if !controllerutil.ContainsFinalizer(&gp, v1alpha1.PackageFinalizer) {
		patch := client.MergeFrom(gp.DeepCopy())
		controllerutil.AddFinalizer(&gp, v1alpha1.PackageFinalizer)
		if err := r.opts.Client.Patch(ctx, &gp, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("add finalizer to GadgetPackage %s: %w", key, err)
		}
	}
	before := gp.DeepCopy()

	// Re-arm a Stalled package on a spec change or a new retry value.
	// "Changed" is against what the last reconcile acted on, not against
	// status: the cache may not have seen the status the controller wrote
	// (observedGeneration, lastHandledRetry) when the package stalls
	// quickly, and the controller's own write is no change of the user's.
	// Setting the adopt-release annotation is the answer to a release
	// refused as not the operator's own: it re-arms too.
	retry := gp.Annotations[v1alpha1.RetryAnnotation]
	adopt := gp.Annotations[v1alpha1.AdoptReleaseAnnotation]
	r.mu.Lock()
	run := r.run(key)
	stalled := run.failure != nil
	specChanged := gp.Generation != run.generation
	retryChanged := retry != "" && retry != run.retry
	adoptChanged := adopt != run.adopt
	run.generation, run.retry, run.adopt = gp.Generation, retry, adopt
	run.releaseAttempts = releaseAttempts(&gp)
	if specChanged || retryChanged {
		run.resetFailures()
	}
	r.mu.Unlock()
	if stalled && (specChanged || adoptChanged || retryChanged) {
		r.opts.Manager.Rearm(key)
		r.mu.Lock()
		run.failure, run.failedAt = nil, ""
		r.mu.Unlock()
		stalled = false
	}
	gp.Status.LastHandledRetry = retry
	r.mu.Lock()
	inflight, wait := run.inflight, time.Until(run.retryAt)
	r.mu.Unlock()
	if !stalled && !inflight && wait > 0 {
		// A crashed attempt's backoff: status now, the plan later.
		r.writeStatus(&gp, key)
		if err := r.patchStatus(ctx, key, before, &gp); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	if st, ok := r.opts.Manager.State(key); ok && !stalled && !inflight {
		if v, newer := r.newerVersion(ctx, &gp, st.Version); newer {
			r.event(&gp, "Normal", v1alpha1.ReasonProgressing, fmt.Sprintf("upgrading %s from %s to %s", gp.Spec.Package, st.Version, v))
			r.opts.Manager.Rearm(key)
		}
	}
	if !stalled {
		if tasks := r.opts.Manager.Plan(&gp); len(tasks) > 0 {
			if err := r.enqueue(key, tasks, r.planDone(key)); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	r.writeStatus(&gp, key)
	if err := r.patchStatus(ctx, key, before, &gp); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

func (r *Reconciler) remove(ctx context.Context, gp *v1alpha1.GadgetPackage, key string) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(gp, v1alpha1.PackageFinalizer) {
		return reconcile.Result{}, nil
	}
	r.mu.Lock()
	run := r.run(key)
	removed, inflight := run.removed, run.inflight
	// A removal that failed for good waits, Stalled, for a new retry
	// value: retrying it at every reconcile would loop without backoff.
	stalled := run.removing && run.failure != nil
	if st, ok := run.failure.(*stall); ok && st.reason == v1alpha1.ReasonCrashedInTask {
		stalled = true // the removal may be what crashed the operator
	}
	if retry := gp.Annotations[v1alpha1.RetryAnnotation]; stalled && retry != "" && retry != run.retry {
		run.retry, run.failure, run.removing, stalled = retry, nil, false, false
		run.resetFailures()
	}
	r.mu.Unlock()
	if stalled && !removed {
		before := gp.DeepCopy()
		gp.Status.LastHandledRetry = gp.Annotations[v1alpha1.RetryAnnotation]
		r.writeStatus(gp, key)
		return reconcile.Result{}, r.patchStatus(ctx, key, before, gp)
	}
	if !removed {
		if inflight {
			return reconcile.Result{RequeueAfter: time.Second}, nil
		}
		_, known := r.opts.Manager.State(key)
		if known {
			tasks, err := r.opts.Manager.PlanRemove(key)
			if err != nil {
				before := gp.DeepCopy()
				setCondition(gp, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonDependencyNotMet, "cannot delete: "+err.Error())
				r.event(gp, "Warning", v1alpha1.ReasonDependencyNotMet, "cannot delete: "+err.Error())
				if perr := r.patchStatus(ctx, key, before, gp); perr != nil {
					return reconcile.Result{}, perr
				}
				return reconcile.Result{RequeueAfter: 5 * time.Second}, nil
			}
			r.mu.Lock()
			run.removing = true
			r.mu.Unlock()
			// PlanRemove gives (Restore,) Disable, Uninstall: the hooks'
			// custom queues go before Uninstall, so that no hook run is
			// busy while the release is deleted and afterDeleteHelm runs.
			if len(tasks) > 0 {
				last := len(tasks) - 1
				tasks = append(append(tasks[:last:last], &removeQueues{r: r, key: key}), tasks[last])
			}
			if err := r.enqueue(key, tasks, func(plan int) {
				r.mu.Lock()
				if run, ok := r.runs[key]; ok && run.plan == plan && !run.broken {
					run.removed, run.inflight = true, false
				}
				r.mu.Unlock()
				r.poke(key)
			}); err != nil {
				return reconcile.Result{}, err
			}
			return reconcile.Result{}, nil
		}
	}
	// Remove is done: drop the main queue (with anything left in it) and
	// let the object go. A task still running there after the grace
	// period is cancelled; the queue is gone either way.
	graceCtx, cancel := context.WithTimeout(ctx, r.opts.RemoveGrace)
	defer cancel()
	if err := r.opts.Queue.Remove(graceCtx, queue.PackageQueueName(key, "")); err != nil && ctx.Err() != nil {
		return reconcile.Result{}, fmt.Errorf("remove queue %s: %w", queue.PackageQueueName(key, ""), err)
	}
	r.mu.Lock()
	if run, ok := r.runs[key]; ok && run.cancel != nil {
		run.cancel()
	}
	delete(r.runs, key)
	others := make([]string, 0, len(r.runs))
	for k := range r.runs {
		others = append(others, k)
	}
	r.mu.Unlock()
	// A package whose removal waited for this one may go now.
	for _, k := range others {
		r.poke(k)
	}
	patch := client.MergeFrom(gp.DeepCopy())
	controllerutil.RemoveFinalizer(gp, v1alpha1.PackageFinalizer)
	if err := r.opts.Client.Patch(ctx, gp, patch); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	return reconcile.Result{}, nil
}

// writeStatus derives status and conditions from the manager's state and
// the controller's bookkeeping. Ready is decided here only.
func (r *Reconciler) writeStatus(gp *v1alpha1.GadgetPackage, key string) {
	st, ok := r.opts.Manager.State(key)
	r.mu.Lock()
	run := r.run(key)
	failure, failedAt, attempts, inflight := run.failure, run.failedAt, run.attempts, run.inflight
	gp.Status.Failures, gp.Status.InstallFailures = run.failures, run.installFailures
	gp.Status.UpgradeFailures, gp.Status.HookFailures = run.upgradeFailures, run.hookFailures
	if !inflight {
		gp.Status.LastAttempt = nil
	}
	if ok && (st.Phase == v1alpha1.PhaseRunning || failure != nil) {
		run.settled = true
	}
	settled := run.settled
	r.mu.Unlock()

	s := &gp.Status
	s.ObservedGeneration = gp.Generation
	// A new Lease holder adopting a package Running at the same digest
	// keeps the published phase until its own tasks have brought it to
	// Running (or failed): the nodes stop a package's Traces when it
	// leaves Running, and a leader change must not stop them.
	adopting := ok && !settled && inflight && s.Phase == v1alpha1.PhaseRunning && s.Digest != "" && st.Digest == s.Digest
	if ok && !adopting {
		s.Phase, s.Enabled, s.Reason = st.Phase, st.Enabled, st.Reason
	}
	if ok {
		s.Version, s.LastAttemptedVersion, s.Digest = st.Version, st.LastAttemptedVersion, st.Digest
		s.HelmRevision, s.Hooks, s.Catalog = st.HelmRevision, st.Hooks, st.Catalog
	}
	if s.Phase == "" {
		s.Phase = v1alpha1.PhasePending
	}
	var drift *manager.DriftReport
	if ok {
		drift = st.Drift
	}
	setDrifted(gp, drift)
	switch {
	case failure != nil:
		reason := fetch.ReasonOf(failure, v1alpha1.ReasonRetriesExhausted)
		msg := fmt.Sprintf("%s failed after %d attempt(s): %v; fix the cause, then change the spec or set the annotation %s", failedAt, attempts, failure, v1alpha1.RetryAnnotation)
		stalledReason := v1alpha1.ReasonRetriesExhausted
		if st, ok := failure.(*stall); ok {
			stalledReason, reason, msg = st.reason, st.readyReason, st.msg
		}
		if c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue || c.Message != msg {
			r.event(gp, "Warning", reason, msg)
		}
		setCondition(gp, v1alpha1.ConditionStalled, metav1.ConditionTrue, stalledReason, msg)
		setCondition(gp, v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonRetriesExhausted, "gave up")
		setCondition(gp, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
		return
	case inflight:
		meta.RemoveStatusCondition(&s.Conditions, v1alpha1.ConditionStalled)
		setCondition(gp, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ReasonProgressing, "running package tasks")
		if c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			setCondition(gp, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonProgressing, "installing")
		}
		return
	}
	meta.RemoveStatusCondition(&s.Conditions, v1alpha1.ConditionStalled)
	setCondition(gp, v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonSucceeded, "idle")
	switch {
	case s.Phase == v1alpha1.PhaseRunning && s.Enabled:
		if c := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			r.event(gp, "Normal", v1alpha1.ReasonSucceeded, fmt.Sprintf("%s %s is running", gp.Spec.Package, s.Version))
		}
		setCondition(gp, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, fmt.Sprintf("%s %s is running", gp.Spec.Package, s.Version))
	case !s.Enabled && s.Phase != v1alpha1.PhasePending:
		reason := v1alpha1.ReasonDisabled
		if gp.Spec.IsEnabled() {
			reason = v1alpha1.ReasonDependencyNotMet
		}
		setCondition(gp, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, s.Reason)
	default:
		setCondition(gp, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonProgressing, "waiting for package tasks")
	}
}

// setDrifted sets the Drifted condition from the last drift report; nil
// (no check since the process started) keeps what status says. Without
// drift detection there is no such condition.
func setDrifted(gp *v1alpha1.GadgetPackage, d *manager.DriftReport) {
	dd := gp.Spec.DriftDetection
	if dd == nil || dd.Mode == "" || dd.Mode == v1alpha1.DriftDetectionDisabled {
		meta.RemoveStatusCondition(&gp.Status.Conditions, v1alpha1.ConditionDrifted)
		return
	}
	if d == nil {
		return
	}
	switch {
	case d.Objects != "" && d.Corrected:
		setCondition(gp, v1alpha1.ConditionDrifted, metav1.ConditionFalse, v1alpha1.ReasonDriftCorrected,
			fmt.Sprintf("release revision %d: set back %s to the manifest's values", d.Revision, d.Objects))
	case d.Objects != "" && d.Mode == v1alpha1.DriftDetectionEnabled:
		setCondition(gp, v1alpha1.ConditionDrifted, metav1.ConditionTrue, v1alpha1.ReasonDriftDetected,
			fmt.Sprintf("release revision %d: %s differ from the manifest; setting them back failed (see the package's Events and the operator log)", d.Revision, d.Objects))
	case d.Objects != "":
		setCondition(gp, v1alpha1.ConditionDrifted, metav1.ConditionTrue, v1alpha1.ReasonDriftDetected,
			fmt.Sprintf("release revision %d: %s differ from the manifest; not corrected (spec.driftDetection.mode warn): "+
				"undo the change, or set the mode to enabled to have it set back", d.Revision, d.Objects))
	default:
		// A correction stays on record until drift is found again: the
		// objects matching the manifest afterwards is its expected result.
		if c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionDrifted); c != nil &&
			c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonDriftCorrected {
			return
		}
		setCondition(gp, v1alpha1.ConditionDrifted, metav1.ConditionFalse, v1alpha1.ReasonNoDrift,
			fmt.Sprintf("release revision %d: the objects match the manifest", d.Revision))
	}
}

// patchStatus writes after's status as a merge patch from before's. When
// status.lastAttempt was written outside the cache's view (recordAttempt)
// and is to be cleared, the attempt and the counts are written whatever
// the cache says.
func (r *Reconciler) patchStatus(ctx context.Context, key string, before, after *v1alpha1.GadgetPackage) error {
	r.mu.Lock()
	run := r.run(key)
	// Not while a plan runs: its steps write lastAttempt themselves.
	force := run.attemptWritten && !run.inflight && after.Status.LastAttempt == nil
	r.mu.Unlock()
	if force {
		before = before.DeepCopy()
		before.Status.LastAttempt = &v1alpha1.TaskAttempt{}
		before.Status.Failures, before.Status.InstallFailures = -1, -1
		before.Status.UpgradeFailures, before.Status.HookFailures = -1, -1
	}
	if equality.Semantic.DeepEqual(before.Status, after.Status) {
		// Nothing to write: the reconcile that a status write of ours
		// caused ends here, without a request.
		return nil
	}
	if err := r.opts.Client.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		if ctx.Err() != nil {
			return nil // shutting down: the next leader writes it
		}
		return client.IgnoreNotFound(err)
	}
	if force {
		r.mu.Lock()
		if !run.inflight {
			run.attemptWritten = false
		}
		r.mu.Unlock()
	}
	return nil
}

func (r *Reconciler) event(obj runtime.Object, typ, reason, msg string) {
	if r.opts.Recorder != nil {
		r.opts.Recorder.Eventf(obj, typ, reason, "%s", msg)
	}
}

// removeQueues is the Remove step between Disable and Uninstall: it
// removes the package's custom queues, as the manager knows them when it
// runs (a package restored from status learns them in Restore). A hook
// run still busy there after RemoveGrace is cancelled; the queue is gone
// either way.
type removeQueues struct {
	r   *Reconciler
	key string
}

func (t *removeQueues) Name() string { return "remove-queues " + t.key }

func (t *removeQueues) Execute(ctx context.Context) error {
	st, _ := t.r.opts.Manager.State(t.key)
	graceCtx, cancel := context.WithTimeout(ctx, t.r.opts.RemoveGrace)
	defer cancel()
	for _, q := range st.Queues {
		name := queue.PackageQueueName(t.key, q)
		// Remove fails only when graceCtx ended, after it cancelled the
		// running task and waited for it; only the task's own end counts.
		if err := t.r.opts.Queue.Remove(graceCtx, name); err != nil && ctx.Err() != nil {
			return fmt.Errorf("remove queue %s: %w", name, err)
		}
	}
	return nil
}

func setCondition(gp *v1alpha1.GadgetPackage, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&gp.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gp.Generation,
	})
}
