package hookhost

import (
	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
)

// Pending kube events, compacted.
//
// A kube event of a hook whose run already waits in the same queue (not
// started yet) joins that run instead of queueing one more: while a hook
// is stuck, the events behind it take memory by object, not by event.
//
//   - Per object: a binding's later event for an object that already has
//     one pending replaces it in place, so the run sees one context per
//     object with its latest state (watch event and object).
//   - Per binding: when a binding has more than MaxPendingEventsPerBinding
//     objects pending, its pending events are replaced by one
//     re-Synchronization, whose objects are the binding's snapshot when the
//     run starts; later events of the binding are covered by it.
//   - Per run: a run holds at most MaxBindingContextsPerRun contexts; more
//     go to a new run queued after it. Nothing is dropped.
//
// Synchronization events a start waits for and schedule triggers are
// queued as they come, as before; Synchronization events of a restarted
// monitor join the waiting run as they are (never compacted). Groups keep
// their meaning: consecutive contexts of one group still collapse into
// one when the run starts (hooks.BindingContexts).

// Defaults of Options.MaxPendingEventsPerBinding and
// Options.MaxBindingContextsPerRun.
const (
	DefaultMaxPendingEventsPerBinding = 1000
	DefaultMaxBindingContextsPerRun   = 1000
)

// chainKey names the open runs of one hook in one queue that may merge.
type chainKey struct {
	// queue is the queue's full name.
	queue    string
	hook     *hooks.Hook
	mergeKey string
}

// objectRef is one object of one binding.
type objectRef struct {
	monitor, namespace, name string
}

// chain is the not yet started runs of one hook in one queue, oldest
// first, and where each binding's pending events are. Guarded by
// Host.pendMu.
type chain struct {
	key   chainKey
	tasks []*runTask
	// objects maps a pending object event to the task holding it.
	objects map[objectRef]*runTask
	// perBinding counts pending object events by monitor ID.
	perBinding map[string]int
	// resync maps a monitor ID to the task holding its re-Synchronization.
	resync map[string]*runTask
}

// gathering is an open task's triggers. A nil entry is an event replaced
// by a re-Synchronization.
type gathering struct {
	chain    *chain
	triggers []*hooks.Trigger
	// at indexes the object events in triggers.
	at map[objectRef]int
	// live counts the non-nil triggers.
	live int
}

// foldResult tells OnKubeEvent what to do outside the lock.
type foldResult struct {
	// enqueue is a new open task to queue; nil when the event joined one.
	enqueue *runTask
	// resynced names the binding whose events became a re-Synchronization.
	resynced string
}

// fold adds the kube event trig (of hook hk, for the package's queue
// custom) to the hook's open run, or starts a new one.
func (h *Host) fold(ph *pkgHooks, hk *hooks.Hook, custom string, trig hooks.Trigger) foldResult {
	proto := h.newRunTask(ph, hk, custom, trig, nil)
	key := chainKey{queue: proto.queue, hook: hk, mergeKey: proto.mergeKey}
	ev := trig.Event
	h.pendMu.Lock()
	defer h.pendMu.Unlock()
	c := h.chains[key]
	if c == nil {
		c = &chain{key: key, objects: map[objectRef]*runTask{}, perBinding: map[string]int{}, resync: map[string]*runTask{}}
		h.chains[key] = c
	}
	if ev.Type != kubeevents.TypeEvent || len(ev.Objects) == 0 || ev.Objects[0].Object == nil {
		return foldResult{enqueue: c.appendLocked(h, proto, trig, nil)}
	}
	obj := ev.Objects[0].Object
	ref := objectRef{monitor: ev.MonitorID, namespace: obj.GetNamespace(), name: obj.GetName()}
	if _, ok := c.resync[ref.monitor]; ok {
		// The re-Synchronization reads the snapshot when it starts.
		return foldResult{}
	}
	if t := c.objects[ref]; t != nil {
		t.gather.triggers[t.gather.at[ref]] = &trig
		return foldResult{}
	}
	if limit := h.opts.MaxPendingEventsPerBinding; limit > 0 && c.perBinding[ref.monitor] >= limit {
		c.dropBindingLocked(ref.monitor)
		rs := trig
		rs.Event = &kubeevents.Event{MonitorID: ev.MonitorID, Binding: ev.Binding, Type: kubeevents.TypeSynchronization}
		rs.Resync = true
		t := c.appendLocked(h, proto, rs, nil)
		c.resync[ref.monitor] = c.tasks[len(c.tasks)-1]
		return foldResult{enqueue: t, resynced: ev.Binding}
	}
	t := c.appendLocked(h, proto, trig, &ref)
	c.perBinding[ref.monitor]++
	return foldResult{enqueue: t}
}

// appendLocked adds trig to the chain's last task, or to proto (returned,
// to be queued) when there is none or it is full. ref is the object the
// trigger is an event of, if any.
func (c *chain) appendLocked(h *Host, proto *runTask, trig hooks.Trigger, ref *objectRef) *runTask {
	var t, fresh *runTask
	if n := len(c.tasks); n > 0 {
		last := c.tasks[n-1]
		if limit := h.opts.MaxBindingContextsPerRun; limit <= 0 || last.gather.live < limit {
			t = last
		}
	}
	if t == nil {
		proto.run = nil
		proto.gather = &gathering{chain: c, at: map[objectRef]int{}}
		c.tasks = append(c.tasks, proto)
		t, fresh = proto, proto
	}
	g := t.gather
	g.triggers = append(g.triggers, &trig)
	g.live++
	if ref != nil {
		g.at[*ref] = len(g.triggers) - 1
		c.objects[*ref] = t
	}
	return fresh
}

// dropBindingLocked removes the pending object events of monitor from
// every open task of the chain.
func (c *chain) dropBindingLocked(monitor string) {
	for ref, t := range c.objects {
		if ref.monitor != monitor {
			continue
		}
		g := t.gather
		g.triggers[g.at[ref]] = nil
		g.live--
		delete(g.at, ref)
		delete(c.objects, ref)
	}
	delete(c.perBinding, monitor)
}

// sealLocked closes t to events and builds its hook run from what it
// gathered. Called with pendMu held.
func (h *Host) sealLocked(t *runTask) {
	g := t.gather
	t.gather = nil
	if g == nil {
		return // sealed at birth: run is set
	}
	c := g.chain
	for i, o := range c.tasks {
		if o == t {
			c.tasks = append(c.tasks[:i], c.tasks[i+1:]...)
			break
		}
	}
	for ref := range g.at {
		delete(c.objects, ref)
		if c.perBinding[ref.monitor]--; c.perBinding[ref.monitor] <= 0 {
			delete(c.perBinding, ref.monitor)
		}
	}
	for m, rt := range c.resync {
		if rt == t {
			delete(c.resync, m)
		}
	}
	if len(c.tasks) == 0 && h.chains[c.key] == c {
		delete(h.chains, c.key)
	}
	trigs := make([]hooks.Trigger, 0, g.live)
	for _, tr := range g.triggers {
		if tr != nil {
			trigs = append(trigs, *tr)
		}
	}
	t.run = hooks.NewRunTask(h.taskDeps(t.ph), t.hook, t.ph.values, trigs...).InQueue(t.queue)
}

// detach seals the open tasks of the chains matching match, so that no
// event joins a task the queue will not run (cancelled, or of a package
// forgotten).
func (h *Host) detach(match func(chainKey) bool) {
	h.pendMu.Lock()
	defer h.pendMu.Unlock()
	for k, c := range h.chains {
		if !match(k) {
			continue
		}
		for len(c.tasks) > 0 {
			h.sealLocked(c.tasks[0])
		}
		delete(h.chains, k)
	}
}

// PendingKubeEvents is how many kube events (and re-Synchronizations) wait
// in hook runs that have not started, after compaction.
func (h *Host) PendingKubeEvents() int {
	h.pendMu.Lock()
	defer h.pendMu.Unlock()
	n := 0
	for _, c := range h.chains {
		for _, t := range c.tasks {
			n += t.gather.live
		}
	}
	return n
}
