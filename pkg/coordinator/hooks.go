package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// pkgHooks is one package's hooks, values and bindings.
type pkgHooks struct {
	key       string
	namespace string
	name      string
	hooks     []*hooks.Hook
	values    *hooks.ValuesStore
	monitors  []monitorRef
	// schedules by cron entry name.
	schedules map[string]scheduleRef

	mu sync.Mutex
	// enabled: bindings may turn events into runs; guarded by mu.
	enabled bool
	// waits are the Synchronization runs Enable waits for, by monitor ID;
	// guarded by mu.
	waits map[string]*syncWait
	// runs by hook name, for the dump; guarded by mu.
	runs map[string]*hookRuns
}

type monitorRef struct {
	id      string
	hook    *hooks.Hook
	binding *hooks.KubernetesBinding
}

type scheduleRef struct {
	hook    *hooks.Hook
	binding *hooks.ScheduleBinding
	// index of the binding in the hook's schedules: bindings may share a
	// name.
	index int
}

type hookRuns struct {
	count   int
	last    time.Time
	lastErr string
}

// syncWait is one Synchronization run that the package's start waits for.
type syncWait struct {
	// run: the binding runs its hook on Synchronization; otherwise the
	// monitor having listed its objects is enough.
	run  bool
	done chan struct{}
	err  error // set before done is closed
}

func (w *syncWait) finish(err error) {
	select {
	case <-w.done:
	default:
		w.err = err
		close(w.done)
	}
}

// hookRunner is the Coordinator seen as the package manager's HookRunner.
type hookRunner Coordinator

func (r *hookRunner) op() *Coordinator { return (*Coordinator)(r) }

func (o *Coordinator) pkg(key string) (*pkgHooks, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pkgs[key]
	if !ok {
		return nil, fmt.Errorf("package %s has no hooks prepared", key)
	}
	return p, nil
}

func (o *Coordinator) taskDeps() hooks.TaskDeps {
	return hooks.TaskDeps{Runner: o.runner, Snapshots: o.events, Patcher: o.patcher, Metrics: o.metrics, Observer: (*hookRunner)(o),
		Logger: o.log.WithName("hooks")}
}

// Prepare builds the package's hooks from the configs the loader kept,
// its values store, and registers its kubernetes monitors (stopped). A
// package prepared before (an upgrade) is forgotten first.
func (r *hookRunner) Prepare(ctx context.Context, key string, p *loader.Package, gp *v1alpha1.GadgetPackage) error {
	o := r.op()
	r.Forget(key)
	settings, err := fetch.Settings(gp)
	if err != nil {
		return err
	}
	vs, err := hooks.NewValuesStore(hooks.ValuesStoreOptions{
		Package: p.Name, Schema: p.Chart.Schema, Defaults: p.Chart.Values, Settings: settings,
		Writer: hooks.GadgetPackageSettings{Client: o.opts.Client, Key: types.NamespacedName{Namespace: gp.Namespace, Name: gp.Name}},
	})
	if err != nil {
		return fmt.Errorf("values of %s: %w", key, err)
	}
	ph := &pkgHooks{key: key, namespace: gp.Namespace, name: gp.Name, values: vs,
		schedules: map[string]scheduleRef{}, waits: map[string]*syncWait{}, runs: map[string]*hookRuns{}}
	mapper, err := hooks.NewRESTMapper(o.opts.Config)
	if err != nil {
		return err
	}
	for _, lh := range p.Hooks {
		h, err := hooks.FromConfig(p.Dir, lh.Name, lh.Config, hooks.LoadOptions{Package: p.Name, PackageKey: key, Env: o.opts.HookEnv})
		if err != nil {
			return err
		}
		// A kind whose API group is not served at all may be defined later
		// (by the chart's crds/, created before the hooks start, or by
		// someone else): its binding waits for it rather than failing the
		// load. A wrong version or a misspelled kind is still an error.
		if err := h.Config.ResolveKindsLater(h.Name, mapper); err != nil {
			return err
		}
		for _, b := range h.Config.Kubernetes {
			if b.KindNotServed != "" {
				o.log.Info("kind not served yet; the binding will wait for it", "package", key, "hook", h.Name, "binding", b.Name,
					"apiVersion", b.Monitor.APIVersion, "kind", b.Monitor.Kind, "reason", b.KindNotServed)
			}
		}
		ph.hooks = append(ph.hooks, h)
		for i := range h.Config.Kubernetes {
			b := &h.Config.Kubernetes[i]
			ph.monitors = append(ph.monitors, monitorRef{id: b.Monitor.ID, hook: h, binding: b})
		}
		for i := range h.Config.Schedules {
			b := &h.Config.Schedules[i]
			ph.schedules[h.Name+"#schedule["+strconv.Itoa(i)+"]"] = scheduleRef{hook: h, binding: b, index: i}
		}
	}
	var added []string
	for _, m := range ph.monitors {
		if err := o.events.AddMonitor(ctx, m.binding.Monitor); err != nil {
			for _, id := range added {
				_ = o.events.RemoveMonitor(id)
			}
			return fmt.Errorf("hook %s binding %s: %w", m.hook.Name, m.binding.Name, err)
		}
		added = append(added, m.id)
	}
	o.mu.Lock()
	o.pkgs[key] = ph
	for _, id := range added {
		o.monitors[id] = key
	}
	o.mu.Unlock()
	return nil
}

// SetSettings replaces the package's settings in its values store.
func (r *hookRunner) SetSettings(key string, gp *v1alpha1.GadgetPackage) error {
	ph, err := r.op().pkg(key)
	if err != nil {
		return err
	}
	settings, err := fetch.Settings(gp)
	if err != nil {
		return err
	}
	return ph.values.SetSettings(settings)
}

// RunBinding runs the hooks declaring binding, in order, inside the
// calling task; the release's drift monitor is paused meanwhile so the
// hooks' own changes raise no alarm.
func (r *hookRunner) RunBinding(ctx context.Context, key, binding string) error {
	o := r.op()
	ph, err := o.pkg(key)
	if err != nil {
		return err
	}
	bt := hooks.BindingType(binding)
	np := nelmPackage(manager.Release{Namespace: ph.namespace, Name: ph.name})
	o.helm.Pause(np)
	defer o.helm.Resume(np)
	// The calling task is one of the package's lifecycle tasks, in its
	// main queue.
	q := queue.PackageQueueName(key, "")
	for _, h := range hooks.Ordered(ph.hooks, bt) {
		if err := hooks.NewRunTask(o.taskDeps(), h, ph.values, hooks.Trigger{Type: bt}).InQueue(q).Execute(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Enable (re)starts the package's monitors, waits until every binding with
// waitForSynchronization had its Synchronization run (in the package's
// synchronization queue) or listed its objects, then adds its schedules.
func (r *hookRunner) Enable(ctx context.Context, key string) error {
	o := r.op()
	ph, err := o.pkg(key)
	if err != nil {
		return err
	}
	ph.mu.Lock()
	ph.enabled = true
	for _, w := range ph.waits {
		w.finish(errors.New("restarted"))
	}
	ph.waits = map[string]*syncWait{}
	for _, m := range ph.monitors {
		if m.binding.WaitForSynchronization {
			ph.waits[m.id] = &syncWait{run: m.binding.Monitor.ExecuteHookOnSynchronization, done: make(chan struct{})}
		}
	}
	waits := make(map[string]*syncWait, len(ph.waits))
	for id, w := range ph.waits {
		waits[id] = w
	}
	ph.mu.Unlock()

	for _, m := range ph.monitors {
		if err := o.events.StopMonitor(m.id); err != nil && !errors.Is(err, kubeevents.ErrMonitorNotFound) {
			return fmt.Errorf("restart monitor %s: %w", m.id, err)
		}
		if err := o.events.StartMonitor(m.id); err != nil {
			return fmt.Errorf("start monitor %s: %w", m.id, err)
		}
	}
	for _, m := range ph.monitors {
		w, ok := waits[m.id]
		if !ok {
			continue
		}
		if err := o.waitSync(ctx, ph, m, w); err != nil {
			return err
		}
	}
	for name, s := range ph.schedules {
		if err := o.cron.Add(key, name, s.binding.Crontab); err != nil {
			return fmt.Errorf("hook %s schedule %s: %w", s.hook.Name, s.binding.Name, err)
		}
	}
	return nil
}

// waitSync waits for one binding's Synchronization run (or list). A
// binding whose kind is not served is not waited for: the package starts,
// and the binding synchronizes whenever its kind appears.
func (o *Coordinator) waitSync(ctx context.Context, ph *pkgHooks, m monitorRef, w *syncWait) error {
	what := fmt.Sprintf("synchronization of hook %s binding %s", m.hook.Name, m.binding.Name)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	done := w.done
	for {
		if !w.run && o.events.Synced(m.id) {
			return nil
		}
		if why := o.events.WaitingForKind(m.id); why != "" {
			o.kindNotServed(ph, m, why)
			return nil
		}
		select {
		case <-done:
			if w.err != nil {
				return fmt.Errorf("%s: %w", what, w.err)
			}
			if w.run {
				return nil
			}
			done = nil
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
	}
}

// ReasonKindNotServed is the Event reason on a GadgetPackage that started
// while a kubernetes binding's kind is not served.
const ReasonKindNotServed = "KindNotServed"

// kindNotServed tells the log and the package's Events that a binding
// waits for its kind, so that a typo does not look like a hang.
func (o *Coordinator) kindNotServed(ph *pkgHooks, m monitorRef, why string) {
	o.log.Info("binding waits for its kind to be served; the package starts without its Synchronization", "package", ph.key,
		"hook", m.hook.Name, "binding", m.binding.Name, "apiVersion", m.binding.Monitor.APIVersion, "kind", m.binding.Monitor.Kind, "reason", why)
	if o.opts.Recorder == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "GadgetPackage", Namespace: ph.namespace, Name: ph.name}
	o.opts.Recorder.Eventf(ref, corev1.EventTypeWarning, ReasonKindNotServed,
		"hook %s binding %s waits for kind %s in %s: %s; the binding starts when it is served", m.hook.Name, m.binding.Name, m.binding.Monitor.Kind, m.binding.Monitor.APIVersion, why)
}

// Disable stops the package's monitors and schedules; waits still open
// fail.
func (r *hookRunner) Disable(key string) {
	o := r.op()
	ph, err := o.pkg(key)
	if err != nil {
		return
	}
	ph.mu.Lock()
	ph.enabled = false
	for _, w := range ph.waits {
		w.finish(errors.New("the package was disabled"))
	}
	ph.mu.Unlock()
	o.cron.RemoveOwner(key)
	for _, m := range ph.monitors {
		_ = o.events.StopMonitor(m.id) // unknown after Forget: nothing to stop
	}
}

// Values are the package's values with hooks' patches.
func (r *hookRunner) Values(key string) (map[string]any, error) {
	ph, err := r.op().pkg(key)
	if err != nil {
		return nil, err
	}
	return ph.values.PackageValues()
}

// Forget drops the package's monitors, schedules, rate limiters and
// metrics.
func (r *hookRunner) Forget(key string) {
	o := r.op()
	r.Disable(key)
	o.mu.Lock()
	ph := o.pkgs[key]
	delete(o.pkgs, key)
	if ph != nil {
		for _, m := range ph.monitors {
			delete(o.monitors, m.id)
		}
	}
	o.mu.Unlock()
	if ph == nil {
		return
	}
	for _, m := range ph.monitors {
		_ = o.events.RemoveMonitor(m.id)
	}
	o.runner.Forget(key)
	if o.metrics != nil {
		o.metrics.Forget(key)
	}
}

// HookRan records a finished run for the dump and status. A run the
// operator cancelled itself (a newer plan, a removal, a stop) says nothing
// about the hook: it is logged at debug level and not recorded, so the
// dump and status keep the last real outcome.
func (r *hookRunner) HookRan(key, hook string, finished time.Time, err error) {
	o := r.op()
	if errors.Is(err, context.Canceled) {
		o.log.V(1).Info("hook run cancelled", "package", key, "hook", hook, "error", err.Error())
		return
	}
	if ph, e := o.pkg(key); e == nil {
		ph.mu.Lock()
		hr := ph.runs[hook]
		if hr == nil {
			hr = &hookRuns{}
			ph.runs[hook] = hr
		}
		hr.count++
		hr.last, hr.lastErr = finished, ""
		if err != nil {
			hr.lastErr = err.Error()
		}
		ph.mu.Unlock()
	}
	o.control.HookRan(key, o.packages.RecordHookRun(key, hook, finished, err))
}

// onSchedule turns a cron trigger into a hook run in the binding's queue.
func (o *Coordinator) onSchedule(t cron.Trigger) {
	ph, err := o.pkg(t.Owner)
	var ref scheduleRef
	ok := false
	if err == nil {
		ph.mu.Lock()
		ref, ok = ph.schedules[t.Name]
		ok = ok && ph.enabled
		ph.mu.Unlock()
	}
	if !ok {
		o.cron.Done(t)
		return
	}
	trig := hooks.Trigger{Type: hooks.Schedule, Binding: ref.binding.Name, Index: ref.index}
	task := o.newRunTask(ph, ref.hook, ref.hook.Queue(trig), trig, nil)
	// The entry may fire again once an attempt ended; a trigger while a
	// failed run waits for its retry merges into it.
	task.attempted = []func(){func() { o.cron.Done(t) }}
	o.enqueueRun(task)
}

// onKubeEvent turns a monitor's event into a hook run of the package
// that owns the monitor. Synchronization runs a start waits for go to the
// package's synchronization queue.
func (o *Coordinator) onKubeEvent(ev kubeevents.Event) {
	o.mu.Lock()
	key, ok := o.monitors[ev.MonitorID]
	ph := o.pkgs[key]
	o.mu.Unlock()
	if !ok || ph == nil {
		o.log.V(1).Info("event of an unknown monitor dropped", "monitor", ev.MonitorID)
		return
	}
	var ref *monitorRef
	for i := range ph.monitors {
		if ph.monitors[i].id == ev.MonitorID {
			ref = &ph.monitors[i]
		}
	}
	if ref == nil {
		return
	}
	ph.mu.Lock()
	enabled := ph.enabled
	w := ph.waits[ev.MonitorID]
	ph.mu.Unlock()
	if !enabled {
		return
	}
	e := ev
	trig := hooks.Trigger{Type: hooks.Kubernetes, Binding: ev.Binding, Event: &e}
	queueName := ref.hook.Queue(trig)
	var done func(error)
	if ev.Type == kubeevents.TypeSynchronization && w != nil {
		queueName = SyncQueue
		done = w.finish
	}
	o.enqueueRun(o.newRunTask(ph, ref.hook, queueName, trig, done))
}

// syncFailed fails the start waiting on a Synchronization run that the
// queue gave up on.
func (o *Coordinator) syncFailed(ev queue.Event) {
	key, q, ok := strings.Cut(ev.Queue, "/")
	if !ok || q != SyncQueue {
		return
	}
	ph, err := o.pkg(key)
	if err != nil {
		return
	}
	ph.mu.Lock()
	for _, w := range ph.waits {
		w.finish(fmt.Errorf("%s: %w", ev.Task, ev.Err))
	}
	ph.mu.Unlock()
}

// enqueueRun queues t in the queue newRunTask named.
func (o *Coordinator) enqueueRun(t *runTask) {
	name := t.queue
	opts := []queue.EnqueueOption{queue.OnDone(func() { t.finish(nil) })}
	if o.opts.MaxAttempts > 0 {
		opts = append(opts, queue.MaxAttempts(o.opts.MaxAttempts))
	}
	if err := o.queues.Enqueue(name, t, opts...); err != nil {
		t.finish(err)
		o.log.Error(err, "enqueue hook run", "queue", name, "task", t.Name())
	}
}

// newRunTask returns a run of h for trig, bound for the package's queue
// custom ("" for the main queue).
func (o *Coordinator) newRunTask(ph *pkgHooks, h *hooks.Hook, custom string, trig hooks.Trigger, done func(error)) *runTask {
	name := queue.PackageQueueName(ph.key, custom)
	t := &runTask{RunTask: hooks.NewRunTask(o.taskDeps(), h, ph.values, trig).InQueue(name), o: o, ph: ph, queue: name}
	if done != nil {
		t.done = []func(error){done}
	}
	return t
}

// runTask is a hook run queued by a binding: it pauses the package's drift
// monitor while it runs and tells whoever waits (a cron entry, a start
// waiting for Synchronization) when it ends. Merged runs keep every
// waiter.
type runTask struct {
	*hooks.RunTask
	o     *Coordinator
	ph    *pkgHooks
	queue string
	mu    sync.Mutex
	// done waiters hear of success or of the queue giving up (through
	// syncFailed); attempted ones after every attempt.
	done      []func(error)
	attempted []func()
}

// Execute runs the hook with the drift monitor paused.
func (t *runTask) Execute(ctx context.Context) error {
	np := nelmPackage(manager.Release{Namespace: t.ph.namespace, Name: t.ph.name})
	t.o.helm.Pause(np)
	err := t.RunTask.Execute(ctx)
	t.o.helm.Resume(np)
	t.mu.Lock()
	attempted := t.attempted
	t.attempted = nil
	t.mu.Unlock()
	for _, f := range attempted {
		f()
	}
	return err
}

// Merge merges the hook runs and their waiters.
func (t *runTask) Merge(next queue.Task) queue.Task {
	n, ok := next.(*runTask)
	if !ok {
		return t
	}
	merged, ok := t.RunTask.Merge(n.RunTask).(*hooks.RunTask)
	if !ok || merged == t.RunTask {
		return t
	}
	t.mu.Lock()
	done := append([]func(error){}, t.done...)
	attempted := append([]func(){}, t.attempted...)
	t.mu.Unlock()
	n.mu.Lock()
	done = append(done, n.done...)
	attempted = append(attempted, n.attempted...)
	n.mu.Unlock()
	return &runTask{RunTask: merged, o: t.o, ph: t.ph, queue: t.queue, done: done, attempted: attempted}
}

// finish tells the waiters once.
func (t *runTask) finish(err error) {
	t.mu.Lock()
	done := t.done
	t.done = nil
	t.mu.Unlock()
	for _, f := range done {
		f(err)
	}
}

var _ queue.Mergeable = (*runTask)(nil)
