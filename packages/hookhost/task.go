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
type runTask struct {
	*hooks.RunTask
	releases ReleasePauser
	ph       *pkgHooks
	queue    string
	mu       sync.Mutex
	// done waiters hear of success or of the queue giving up (through
	// OnQueueEvent); attempted ones after every attempt.
	done      []func(error)
	attempted []func()
}

var _ queue.Mergeable = (*runTask)(nil)

// Execute runs the hook with the drift monitor paused.
func (t *runTask) Execute(ctx context.Context) error {
	t.releases.Pause(t.ph.release())
	err := t.RunTask.Execute(ctx)
	t.releases.Resume(t.ph.release())
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
	return &runTask{RunTask: merged, releases: t.releases, ph: t.ph, queue: t.queue, done: done, attempted: attempted}
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
