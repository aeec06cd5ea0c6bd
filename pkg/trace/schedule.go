package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"

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
// skipped and counted. A tick that cannot read its Trace because the API
// server is unreachable waits for it to come back (holding the entry, so
// the crontab counts the ticks due meanwhile as skipped) and is then
// counted as skipped too, with a run in the history saying why: no tick
// is lost silently to an outage.
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
	var tr gadgetv1alpha1.Trace
	outage, err := c.untilReachable(key, "read the Trace for a scheduled run", func(ctx context.Context) error {
		return c.opts.APIReader.Get(ctx, key, &tr)
	})
	if err != nil {
		return // gone, or the controller stops
	}
	if tr.Spec.Schedule == "" || tr.Spec.Suspend || !tr.DeletionTimestamp.IsZero() || tr.Spec.Node != c.opts.NodeName {
		return
	}
	info := &triggerInfo{t: t, skipped: c.skippedSince(key)}
	if outage != nil {
		c.recordMissed(key, t, info.skipped, outage)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), time.Minute)
	defer cancel()
	if c.activeSub(key) != nil {
		c.patchStatusWhenReachable(key, "count a skipped scheduled run", func(tr *gadgetv1alpha1.Trace) { tr.Status.SkippedRuns += info.skipped + 1 })
		return
	}
	err = c.begin(ctx, &tr, opSchedule, info, "")
	switch {
	case err == nil:
		handedOver = true // the subscriber marks the trigger done at its end
	case errors.Is(err, errStopping):
	default:
		// a refused or failed start is the run's error, and said where a
		// user and an operator look
		c.log.Info("scheduled run failed to start", "trace", key.String(), "error", err.Error())
		c.event(ctx, key, "Warning", "RunFailed", fmt.Sprintf("scheduled run: %v", err))
		c.patchStatusWhenReachable(key, "record a failed scheduled run", func(tr *gadgetv1alpha1.Trace) {
			tr.Status.SkippedRuns += info.skipped
			start, end := metav1Time(t.Scheduled), metav1Time(c.opts.Now())
			tr.Status.LastRunTime = &start
			appendRun(tr, gadgetv1alpha1.TraceRun{StartTime: start, EndTime: &end, Error: err.Error()})
		})
	}
}

// recordMissed counts a tick that could not run because the API server
// was unreachable at its time (and the ticks skipped while it waited), in
// status.skippedRuns and as a run of the history whose error says why.
func (c *Controller) recordMissed(key types.NamespacedName, t cron.Trigger, skipped int64, outage error) {
	msg := fmt.Sprintf("skipped: the API server was unreachable at the scheduled time: %v", outage)
	c.log.Info("scheduled run skipped", "trace", key.String(), "scheduled", t.Scheduled, "skipped", skipped+1, "error", outage.Error())
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), time.Minute)
	defer cancel()
	c.event(ctx, key, "Warning", "RunSkipped", "scheduled run "+msg)
	c.patchStatusWhenReachable(key, "count a missed scheduled run", func(tr *gadgetv1alpha1.Trace) {
		tr.Status.SkippedRuns += skipped + 1
		start := metav1Time(t.Scheduled)
		appendRun(tr, gadgetv1alpha1.TraceRun{StartTime: start, EndTime: &start, Error: msg})
	})
}

// appendRun adds run to the history, keeping spec.historyLimit runs.
func appendRun(tr *gadgetv1alpha1.Trace, run gadgetv1alpha1.TraceRun) {
	tr.Status.Runs = append(tr.Status.Runs, run)
	if n := len(tr.Status.Runs) - historyLimit(tr); n > 0 {
		tr.Status.Runs = append([]gadgetv1alpha1.TraceRun(nil), tr.Status.Runs[n:]...)
	}
}

// patchStatusWhenReachable is patchStatus retried while the API server is
// unreachable, so what a tick records is written once it is back; only
// the controller stopping gives up, with a log line.
func (c *Controller) patchStatusWhenReachable(key types.NamespacedName, what string, mutate func(tr *gadgetv1alpha1.Trace)) {
	if _, err := c.untilReachable(key, what, func(ctx context.Context) error {
		return c.patchStatus(ctx, key, mutate)
	}); err != nil && !apierrors.IsNotFound(err) {
		c.log.Error(err, what, "trace", key.String())
	}
}

// Retries of a tick's API calls while the API server is unreachable.
const (
	reachRetryFirst = 500 * time.Millisecond
	reachRetryMax   = 15 * time.Second
	reachTryTimeout = 30 * time.Second
)

// untilReachable calls f until it succeeds or fails with something other
// than an unreachable API server, waiting from reachRetryFirst doubling to
// reachRetryMax between tries, and until the controller stops. It returns
// the first unreachable error it saw (nil when the first try reached the
// server) and f's last error.
func (c *Controller) untilReachable(key types.NamespacedName, what string, f func(ctx context.Context) error) (outage, err error) {
	wait := reachRetryFirst
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), reachTryTimeout)
		err = f(ctx)
		cancel()
		if err == nil || !unreachable(err) {
			return outage, err
		}
		if outage == nil {
			outage = err
			c.log.Info("API server unreachable; retrying until it is back", "trace", key.String(), "action", what, "error", err.Error())
		}
		timer := time.NewTimer(wait)
		select {
		case <-c.runCtx.Done():
			timer.Stop()
			return outage, fmt.Errorf("%s: controller stopping while the API server was unreachable: %w", what, err)
		case <-timer.C:
		}
		wait = min(2*wait, reachRetryMax)
	}
}

// unreachable tells an API server that could not be reached, or that
// answered it cannot serve now (5xx, 429, 408), from an answer about the
// request itself (not found, forbidden, invalid, conflict) or a local
// error, which retrying would not change.
func unreachable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		return code >= 500 || code == 429 || code == 408
	}
	var urlErr *url.Error
	var netErr net.Error
	return errors.As(err, &urlErr) || errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err)
}

func parseKey(s string) (types.NamespacedName, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return types.NamespacedName{Namespace: s[:i], Name: s[i+1:]}, true
		}
	}
	return types.NamespacedName{}, false
}
