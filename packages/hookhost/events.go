package hookhost

import (
	"fmt"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// OnSchedule turns a cron trigger into a hook run in the binding's queue;
// a trigger of an unknown or disabled package is let go at once.
func (h *Host) OnSchedule(t cron.Trigger) {
	ph, err := h.pkg(t.Owner)
	var ref scheduleRef
	ok := false
	if err == nil {
		ph.mu.Lock()
		ref, ok = ph.schedules[t.Name]
		ok = ok && ph.enabled
		ph.mu.Unlock()
	}
	if !ok {
		h.opts.Schedules.Done(t)
		return
	}
	trig := hooks.Trigger{Type: hooks.Schedule, Binding: ref.binding.Name, Index: ref.index}
	task := h.newRunTask(ph, ref.hook, ref.hook.Queue(trig), trig, nil)
	// The entry may fire again once an attempt ended; a trigger while a
	// failed run waits for its retry merges into it.
	task.attempted = []func(){func() { h.opts.Schedules.Done(t) }}
	h.enqueueRun(task)
}

// OnKubeEvent turns a monitor's event into a hook run of the package
// that owns the monitor. Synchronization runs a start waits for go to the
// package's synchronization queue (hooks.SyncQueue).
func (h *Host) OnKubeEvent(ev kubeevents.Event) {
	h.mu.Lock()
	key, ok := h.monitors[ev.MonitorID]
	ph := h.pkgs[key]
	h.mu.Unlock()
	if !ok || ph == nil {
		h.log.V(1).Info("event of an unknown monitor dropped", "monitor", ev.MonitorID)
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
		queueName = hooks.SyncQueue
		done = w.finish
		h.enqueueRun(h.newRunTask(ph, ref.hook, queueName, trig, done))
		return
	}
	res := h.fold(ph, ref.hook, queueName, trig)
	if res.resynced != "" {
		h.log.Info("too many kube events pending for a binding while its hook waits; they are replaced by one re-Synchronization with the binding's objects when the run starts",
			"package", ph.key, "hook", ref.hook.Name, "binding", res.resynced, "limit", h.opts.MaxPendingEventsPerBinding, "flag", "--max-pending-events-per-binding")
	}
	if res.enqueue != nil {
		h.enqueueRun(res.enqueue)
	}
}

// OnQueueEvent fails the start waiting on a Synchronization run that the
// queue gave up on or cancelled; other events concern it not.
func (h *Host) OnQueueEvent(ev queue.Event) {
	if ev.Kind != queue.Failed && ev.Kind != queue.Cancelled {
		return
	}
	if ev.Kind == queue.Cancelled {
		// A cancelled run may be an open one: later events must not join
		// it.
		h.detach(func(k chainKey) bool {
			return k.queue == ev.Queue && "hook-run "+k.hook.Name == ev.Task
		})
	}
	if ev.Owner.Package == "" || ev.Owner.Custom != hooks.SyncQueue {
		return
	}
	ph, err := h.pkg(ev.Owner.Package)
	if err != nil {
		return
	}
	ph.mu.Lock()
	for _, w := range ph.waits {
		w.finish(fmt.Errorf("%s: %w", ev.Task, ev.Err))
	}
	ph.mu.Unlock()
}

// enqueueRun queues t in the queue newRunTask named. A task that cannot be
// queued is sealed, so that no later event joins it.
func (h *Host) enqueueRun(t *runTask) {
	name := t.queue
	opts := []queue.EnqueueOption{queue.OnDone(func() { t.finish(nil) }), queue.OwnedBy(t.owner)}
	if h.opts.MaxAttempts > 0 {
		opts = append(opts, queue.MaxAttempts(h.opts.MaxAttempts))
	}
	if err := h.opts.Queues.Enqueue(name, t, opts...); err != nil {
		t.sealed()
		t.finish(err)
		h.log.Error(err, "enqueue hook run", "queue", name, "task", t.Name())
	}
}

// newRunTask returns a run of hk for trig, bound for the package's queue
// custom ("" for the main queue).
func (h *Host) newRunTask(ph *pkgHooks, hk *hooks.Hook, custom string, trig hooks.Trigger, done func(error)) *runTask {
	owner := queue.Owner{Package: ph.key, Custom: custom}
	name := owner.QueueName()
	run := hooks.NewRunTask(h.taskDeps(ph), hk, ph.values, trig).InQueue(name)
	t := &runTask{host: h, ph: ph, hook: hk, queue: name, owner: owner, name: run.Name(), mergeKey: run.MergeKey(), run: run}
	if done != nil {
		t.done = []func(error){done}
	}
	return t
}
