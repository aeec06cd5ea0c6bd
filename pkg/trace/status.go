package trace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// statusBackoff retries a status write that lost a race with another
// write of the Trace: up to 10 times, from 10ms doubling to at most 2s.
var statusBackoff = wait.Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.1, Cap: 2 * time.Second}

func metav1Time(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }

// patchStatus reads the Trace from the API server, applies mutate and
// patches the status with an optimistic lock, retrying on conflicts.
// Writes of one Trace are serialised on the node.
func (c *Controller) patchStatus(ctx context.Context, key types.NamespacedName, mutate func(tr *gadgetv1alpha1.Trace)) error {
	unlock := c.locks.lock("trace/" + key.String())
	defer unlock()
	err := retry.RetryOnConflict(statusBackoff, func() error {
		var tr gadgetv1alpha1.Trace
		if err := c.opts.APIReader.Get(ctx, key, &tr); err != nil {
			return err
		}
		before := tr.DeepCopy()
		mutate(&tr)
		return c.opts.Client.Status().Patch(ctx, &tr, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	})
	if err != nil {
		return client.IgnoreNotFound(fmt.Errorf("write status of trace %s: %w", key, err))
	}
	return nil
}

// setError writes an operation's failure to status, as an Event and to
// the log.
func (c *Controller) setError(ctx context.Context, key types.NamespacedName, op string, err error) error {
	msg := fmt.Sprintf("%s: %v", op, err)
	c.log.Info("trace operation failed", "trace", key.String(), "op", op, "error", msg)
	c.event(ctx, key, "Warning", "OperationFailed", msg)
	return c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) {
		tr.Status.OperationError = msg
		tr.Status.OperationWarning = ""
	})
}

// setWarning writes a non-fatal remark to status.
func (c *Controller) setWarning(ctx context.Context, key types.NamespacedName, msg string) error {
	return c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) {
		tr.Status.OperationError = ""
		tr.Status.OperationWarning = msg
	})
}

func (c *Controller) event(ctx context.Context, key types.NamespacedName, typ, reason, msg string) {
	if c.opts.Recorder == nil {
		return
	}
	var tr gadgetv1alpha1.Trace
	if err := c.opts.Client.Get(ctx, key, &tr); err != nil {
		return
	}
	c.opts.Recorder.Event(&tr, typ, reason, msg)
}

// removeAnnotation removes the operation annotation when it still asks
// for op: a newer request stays. One JSON patch whose test operation makes
// the check and the removal atomic, so no concurrent write of the Trace
// (progress, another node's read) can make it conflict.
func (c *Controller) removeAnnotation(ctx context.Context, key types.NamespacedName, op string) error {
	path := "/metadata/annotations/" + strings.ReplaceAll(strings.ReplaceAll(gadgetv1alpha1.OperationAnnotation, "~", "~0"), "/", "~1")
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": op},
		{"op": "remove", "path": path},
	})
	if err != nil {
		return fmt.Errorf("remove the operation annotation of trace %s: %w", key, err)
	}
	tr := &gadgetv1alpha1.Trace{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	err = c.opts.Client.Patch(ctx, tr, client.RawPatch(types.JSONPatchType, patch))
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsInvalid(err) || apierrors.IsConflict(err) || statusCode(err) == http.StatusUnprocessableEntity:
		return nil // the test failed: the annotation is gone or asks for something else now
	}
	return fmt.Errorf("remove the operation annotation of trace %s: %w", key, err)
}

func statusCode(err error) int32 {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Code
	}
	return 0
}

// outcome is how a subscriber's run ended.
type outcome struct {
	reason  stopReason
	message string
	ref     string
	lost    int64
}

// writeOutcome records the end of s's run: state, error, counts, output
// and the run's entry in status.runs. A generate's annotation is removed
// after it. Both writes wait for an unreachable API server to come back
// (until the controller stops): the run's events are gathered already, and
// a run whose end is not written would stay open in status.runs forever.
func (c *Controller) writeOutcome(s *subscriber, o outcome) error {
	now := metav1Time(c.opts.Now())
	events := s.events.Load()
	var out string
	var truncated bool
	if s.status != nil {
		out, truncated, _ = s.status.Result()
	}
	_, err := c.untilReachable(s.key, "write the outcome of the run to status", func(ctx context.Context) error {
		return c.patchStatus(ctx, s.key, func(tr *gadgetv1alpha1.Trace) { outcomeStatus(tr, s, o, now, events, out, truncated) })
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), 10*time.Second)
	defer cancel()
	if o.reason != reasonShutdown {
		typ, reason, msg := "Normal", "RunEnded", fmt.Sprintf("%s run ended: %d events, %d lost", runName(s.op), events, o.lost)
		if o.message != "" {
			typ, reason, msg = "Warning", "RunFailed", fmt.Sprintf("%s run ended: %s", runName(s.op), o.message)
		}
		c.event(ctx, s.key, typ, reason, msg)
	}
	if s.op == gadgetv1alpha1.OperationGenerate && o.reason != reasonShutdown {
		_, err := c.untilReachable(s.key, "remove the generate annotation", func(ctx context.Context) error {
			return c.removeAnnotation(ctx, s.key, gadgetv1alpha1.OperationGenerate)
		})
		return err
	}
	return nil
}

// outcomeStatus writes o, the end of s's run, into tr's status.
func outcomeStatus(tr *gadgetv1alpha1.Trace, s *subscriber, o outcome, now metav1.Time, events int64, out string, truncated bool) {
	if tr.UID != s.uid {
		return
	}
	st := &tr.Status
	runErr := ""
	switch o.reason {
	case reasonStop:
		st.State = gadgetv1alpha1.TraceStopped
		st.OperationError = ""
	case reasonDone:
		st.State = gadgetv1alpha1.TraceCompleted
		if s.op != opSchedule {
			st.OperationError = ""
		}
	case reasonShutdown:
		runErr = ErrorInterrupted // the state stays: Started runs start again
	default: // package, run ended, sink
		runErr = o.message
		if s.op == opSchedule {
			st.State = gadgetv1alpha1.TraceCompleted
		} else {
			st.State = gadgetv1alpha1.TraceStopped
			st.OperationError = o.message
			st.OperationWarning = ""
		}
	}
	if s.status != nil {
		st.Output, st.OutputTruncated = out, truncated
	}
	st.EventCount, st.LostCount = events, o.lost
	for i := len(st.Runs) - 1; i >= 0; i-- {
		r := &st.Runs[i]
		if r.EndTime == nil && r.StartTime.Unix() == s.start.Unix() {
			r.EndTime = &now
			r.Events, r.Lost, r.Output, r.Error = events, o.lost, o.ref, runErr
			break
		}
	}
}

// publishProgress writes a running Status-mode Trace's output and counts
// with one merge patch (no read: only the run's owner writes these fields
// while it runs). The caller holds a token of the node's progress rate
// limit (see subscriber.own), and at most 4 writes are in flight, so
// hundreds of busy Traces cost the API server a bounded rate even when it
// answers slowly; a write that finds no slot skips, and the Trace's next
// turn (or the end of its run) publishes.
func (c *Controller) publishProgress(s *subscriber) bool {
	select {
	case c.progressSlots <- struct{}{}:
		defer func() { <-c.progressSlots }()
	default:
		return false // as many writes as allowed are in flight
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.runCtx), 10*time.Second)
	defer cancel()
	out, truncated, _ := s.status.Result()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"output": out, "outputTruncated": truncated, "eventCount": s.events.Load(),
	}})
	if err != nil {
		s.log.Error(err, "publish progress")
		return false
	}
	unlock := c.locks.lock("trace/" + s.key.String())
	defer unlock()
	tr := &gadgetv1alpha1.Trace{ObjectMeta: metav1.ObjectMeta{Namespace: s.key.Namespace, Name: s.key.Name}}
	if err := c.opts.Client.Status().Patch(ctx, tr, client.RawPatch(types.MergePatchType, patch)); err != nil {
		s.log.Error(err, "publish progress")
		return false
	}
	return true
}

// pruneConfigMaps keeps the newest spec.historyLimit output ConfigMaps.
func (c *Controller) pruneConfigMaps(ctx context.Context, s *subscriber) error {
	var tr gadgetv1alpha1.Trace
	if err := c.opts.APIReader.Get(ctx, s.key, &tr); err != nil {
		return client.IgnoreNotFound(err)
	}
	return output.PruneConfigMaps(ctx, c.opts.Client, &tr, s.limit)
}
