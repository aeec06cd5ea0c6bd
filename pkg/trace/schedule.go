package trace

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// scheduleEntry is the name of a Trace's entry in the crontab; the
// owner is "<namespace>/<name>".
const scheduleEntry = "schedule"

// triggerInfo is a due tick and the ticks skipped before it.
type triggerInfo struct {
	t       cron.Trigger
	skipped int64
}

// syncSchedule registers, replaces or removes the Trace's cron entry.
// Ticks missed while the operator was down are not replayed: an entry
// added now fires at its next time from now.
func (c *Controller) syncSchedule(ctx context.Context, tr *gadgetv1alpha1.Trace) error {
	key := types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}
	want := tr.Spec.Schedule
	if tr.Spec.Suspend {
		want = ""
	}
	c.mu.Lock()
	have := c.sched[key]
	c.mu.Unlock()
	if want == have {
		return nil
	}
	if want == "" {
		c.cron.Remove(key.String(), scheduleEntry)
		c.mu.Lock()
		delete(c.sched, key)
		c.mu.Unlock()
		return nil
	}
	if err := c.cron.Add(key.String(), scheduleEntry, want); err != nil {
		c.cron.Remove(key.String(), scheduleEntry)
		c.mu.Lock()
		delete(c.sched, key)
		c.mu.Unlock()
		if errors.Is(err, cron.ErrInvalidSpec) {
			msg := fmt.Sprintf("spec.schedule: %v", err)
			if tr.Status.OperationError == msg {
				return nil
			}
			return c.setError(ctx, key, "schedule", errors.New(msg))
		}
		return err
	}
	c.mu.Lock()
	c.sched[key] = want
	c.mu.Unlock()
	if tr.Status.OperationError != "" && tr.Annotations[gadgetv1alpha1.OperationAnnotation] == "" {
		// a schedule error fixed by the new spec
		return c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) {
			if len(tr.Status.OperationError) > len("spec.schedule") && tr.Status.OperationError[:len("spec.schedule")] == "spec.schedule" {
				tr.Status.OperationError = ""
			}
		})
	}
	return nil
}

// skippedSince returns the ticks of key's entry skipped since the last
// call (because a run was still going).
func (c *Controller) skippedSince(key types.NamespacedName) int64 {
	var total uint64
	for _, e := range c.cron.Entries() {
		if e.Owner == key.String() && e.Name == scheduleEntry {
			total = e.Skipped
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.skipped[key]
	c.skipped[key] = total
	if total < prev {
		return int64(total) // the entry was replaced
	}
	return int64(total - prev)
}

// tick runs one scheduled run: for the spec's duration, recorded in
// status.runs. A tick for a Trace that runs already (a manual start) is
// skipped and counted.
func (c *Controller) tick(t cron.Trigger) {
	defer c.wg.Done()
	key, ok := parseKey(t.Owner)
	handedOver := false
	defer func() {
		if !handedOver {
			c.cron.Done(t)
		}
	}()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), time.Minute)
	defer cancel()
	var tr gadgetv1alpha1.Trace
	if err := c.opts.APIReader.Get(ctx, key, &tr); err != nil {
		return
	}
	if tr.Spec.Schedule == "" || tr.Spec.Suspend || !tr.DeletionTimestamp.IsZero() || tr.Spec.Node != c.opts.NodeName {
		return
	}
	info := &triggerInfo{t: t, skipped: c.skippedSince(key)}
	if c.activeSub(key) != nil {
		_ = c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) { tr.Status.SkippedRuns += info.skipped + 1 })
		return
	}
	err := c.begin(ctx, &tr, opSchedule, info, "")
	switch {
	case err == nil:
		handedOver = true // the subscriber marks the trigger done at its end
	case errors.Is(err, errStopping):
	default:
		// a refused or failed start is the run's error, and said where a
		// user and an operator look
		c.log.Info("scheduled run failed to start", "trace", key.String(), "error", err.Error())
		c.event(ctx, key, "Warning", "RunFailed", fmt.Sprintf("scheduled run: %v", err))
		now := metav1Time(c.opts.Now())
		start := metav1Time(t.Scheduled)
		if err := c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) {
			tr.Status.SkippedRuns += info.skipped
			tr.Status.LastRunTime = &start
			tr.Status.Runs = append(tr.Status.Runs, gadgetv1alpha1.TraceRun{StartTime: start, EndTime: &now, Error: err.Error()})
			if n := len(tr.Status.Runs) - historyLimit(tr); n > 0 {
				tr.Status.Runs = append([]gadgetv1alpha1.TraceRun(nil), tr.Status.Runs[n:]...)
			}
		}); err != nil {
			c.log.Error(err, "record a failed scheduled run", "trace", key.String())
		}
	}
}

func parseKey(s string) (types.NamespacedName, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return types.NamespacedName{Namespace: s[:i], Name: s[i+1:]}, true
		}
	}
	return types.NamespacedName{}, false
}
