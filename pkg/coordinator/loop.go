package coordinator

import (
	"fmt"
	"time"

	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/queue"
)

// handle is the event handler: it turns cron triggers, kube events and
// drift reports into tasks, hands scheduler and queue events to the
// GadgetPackage controller, and ends when the queue service closes its
// events.
func (c *Coordinator) handle() {
	defer close(c.handlerDone)
	triggers, kube, drifts, enablement := c.cron.Triggers(), c.events.Events(), c.helm.Drifts(), c.sched.Events()
	queueEvents := c.queues.Events()
	stop := c.handlerStop
	for {
		select {
		case <-stop:
			triggers, kube, drifts, enablement, stop = nil, nil, nil, nil, nil
		case t, ok := <-triggers:
			if !ok {
				triggers = nil
				continue
			}
			c.hooks.OnSchedule(t)
		case ev, ok := <-kube:
			if !ok {
				kube = nil
				continue
			}
			c.hooks.OnKubeEvent(ev)
		case d := <-drifts:
			c.onDrift(d)
		case ev, ok := <-enablement:
			if !ok {
				enablement = nil
				continue
			}
			c.control.HandleSchedulerEvent(ev)
		case ev, ok := <-queueEvents:
			if !ok {
				return
			}
			c.onQueueEvent(ev)
		}
	}
}

// onDrift records a comparison of a release's objects with its manifest
// for the package's Drifted condition, and re-applies a release whose
// objects went missing.
func (c *Coordinator) onDrift(d nelm.Drift) {
	key := d.Package.Key()
	if d.Checked {
		report := manager.DriftReport{Revision: d.Revision, Objects: d.ModifiedSummary(), Mode: d.Mode, Corrected: d.Corrected}
		if c.packages.RecordDrift(key, report) {
			c.control.DriftChanged(key)
		}
	}
	if len(d.Missing) == 0 {
		return
	}
	t, ok := c.packages.RunTask(key)
	if !ok {
		return
	}
	c.log.Info("release drifted; re-applying", "package", key, "missing", fmt.Sprint(d.Missing))
	owner := queue.Owner{Package: key}
	if err := c.queues.Enqueue(owner.QueueName(), t, queue.Unique(), queue.OwnedBy(owner)); err != nil {
		c.log.Error(err, "enqueue run after drift", "package", key)
	}
}

func (c *Coordinator) onQueueEvent(ev queue.Event) {
	if ev.Kind == queue.Failed {
		// One error line per task given up on, not per attempt: the
		// attempts' errors are in the dump (lastError) and hooks' failed
		// attempts are logged at info level.
		c.log.Error(ev.Err, "task failed; giving up", "package", ev.Owner.Package, "queue", ev.Queue, "task", ev.Task,
			"attempts", ev.Attempts, "reason", fetch.ReasonOf(ev.Err, v1alpha1.ReasonRetriesExhausted))
	}
	c.control.HandleEvent(ev)
	c.hooks.OnQueueEvent(ev)
}

// runRecorder carries a hook run the host recorded into the package's
// state and its GadgetPackage's status.hooks.
type runRecorder struct{ c *Coordinator }

func (r runRecorder) HookRan(key, hook string, finished time.Time, err error) {
	r.c.control.HookRan(key, r.c.packages.RecordHookRun(key, hook, finished, err))
}
