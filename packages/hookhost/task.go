package hookhost

import (
	"context"
	"sync"

	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/queue"
)

// runTask is a hook run queued by a binding: it pauses the package's drift
// monitor while it runs and tells whoever waits (a cron entry, a start
// waiting for Synchronization) when it ends. Merged runs keep every
// waiter.
//
// A run of kube events (see pending.go) is open until it starts or the
// queue merges it: meanwhile later events of its hook join it, compacted
// per object. Once sealed, its triggers are fixed.
type runTask struct {
	host     *Host
	ph       *pkgHooks
	hook     *hooks.Hook
	queue    string
	owner    queue.Owner // the package and custom queue of queue
	name     string
	mergeKey string

	// run is the hook run, set when the task is sealed (at once for a
	// task that gathers no events); guarded by host.pendMu.
	run *hooks.RunTask
	// gather holds the events of an open task; nil once sealed. Guarded
	// by host.pendMu.
	gather *gathering

	mu sync.Mutex
	// done waiters hear of success or of the queue giving up (through
	// OnQueueEvent); attempted ones after every attempt.
	done      []func(error)
	attempted []func()
}

var _ queue.Mergeable = (*runTask)(nil)

// Name is the hook run's name, "hook-run <hook>".
func (t *runTask) Name() string { return t.name }

// MergeKey is the hook run's: runs of one hook with the same allowFailure
// merge.
func (t *runTask) MergeKey() string { return t.mergeKey }

// sealed seals the task, so no event joins it any more, and returns its
// hook run.
func (t *runTask) sealed() *hooks.RunTask {
	t.host.pendMu.Lock()
	defer t.host.pendMu.Unlock()
	if t.run == nil {
		t.host.sealLocked(t)
	}
	return t.run
}

// Execute runs the hook with the drift monitor paused. A run whose events
// were all replaced by a later task's re-Synchronization has nothing to
// run.
func (t *runTask) Execute(ctx context.Context) error {
	run := t.sealed()
	var err error
	if len(run.Triggers()) > 0 {
		t.host.opts.Releases.Pause(t.ph.release())
		err = run.Execute(ctx)
		t.host.opts.Releases.Resume(t.ph.release())
	}
	t.mu.Lock()
	attempted := t.attempted
	t.attempted = nil
	t.mu.Unlock()
	for _, f := range attempted {
		f()
	}
	return err
}

// Merge merges the hook runs and their waiters. It refuses (returns t)
// a merge past MaxBindingContextsPerRun: the queue then runs next on its
// own, after t.
func (t *runTask) Merge(next queue.Task) queue.Task {
	n, ok := next.(*runTask)
	if !ok {
		return t
	}
	a, b := t.sealed(), n.sealed()
	if limit := t.host.opts.MaxBindingContextsPerRun; limit > 0 && len(a.Triggers())+len(b.Triggers()) > limit {
		return t
	}
	merged, ok := a.Merge(b).(*hooks.RunTask)
	if !ok || merged == a {
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
	return &runTask{host: t.host, ph: t.ph, hook: t.hook, queue: t.queue, name: t.name, mergeKey: t.mergeKey,
		run: merged, done: done, attempted: attempted}
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
