package trace

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// opSchedule marks a subscriber of a scheduled run.
const opSchedule = "schedule"

// WarningNoContainer is the operationWarning of a Trace whose filter
// matches no container on the node when it starts.
const WarningNoContainer = "no container matches the requested filter"

// WarningRestarted is the operationWarning of a Trace started again after
// an operator restart.
const WarningRestarted = "restarted after an operator restart"

// ErrorInterrupted is the error of a run cut short by the operator
// stopping or restarting.
const ErrorInterrupted = "interrupted: the operator stopped during the run; a Started trace is started again when the operator is back"

var operations = []string{gadgetv1alpha1.OperationStart, gadgetv1alpha1.OperationStop, gadgetv1alpha1.OperationGenerate, gadgetv1alpha1.OperationCollect}

var outputModes = []gadgetv1alpha1.OutputMode{gadgetv1alpha1.OutputStatus, gadgetv1alpha1.OutputExternalResource, gadgetv1alpha1.OutputFile, gadgetv1alpha1.OutputStream}

// perform carries out op on tr and writes its outcome to status. keep is
// true when the annotation must stay: a generate still running removes it
// itself once Completed is written.
func (c *Controller) perform(ctx context.Context, tr *gadgetv1alpha1.Trace, op string) (keep bool, err error) {
	key := types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}
	s := c.activeSub(key)
	switch op {
	case gadgetv1alpha1.OperationStop:
		if s == nil {
			msg := fmt.Sprintf("stop: the trace is not running (state %s); nothing to stop", stateOr(tr.Status.State))
			return false, c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) {
				if tr.Status.State == gadgetv1alpha1.TraceStarted {
					tr.Status.State = gadgetv1alpha1.TraceStopped
				}
				tr.Status.OperationError, tr.Status.OperationWarning = "", msg
			})
		}
		s.requestStop(reasonStop, "")
		<-s.finished
		return false, nil
	case gadgetv1alpha1.OperationStart, gadgetv1alpha1.OperationGenerate, gadgetv1alpha1.OperationCollect:
	default:
		return false, c.setError(ctx, key, op, fmt.Errorf("unknown operation %q in annotation %s (allowed: %s)", op, gadgetv1alpha1.OperationAnnotation, strings.Join(operations, ", ")))
	}
	if s != nil {
		switch {
		case s.op == op && op == gadgetv1alpha1.OperationGenerate:
			return true, nil // in progress: its end removes the annotation
		case s.op == op:
			return false, c.setWarning(ctx, key, fmt.Sprintf("%s: the trace is already started; nothing to do", op))
		default:
			return false, c.setError(ctx, key, op, fmt.Errorf("a %s run of the trace is in progress; stop it first", runName(s.op)))
		}
	}
	switch err := c.begin(ctx, tr, op, nil, ""); {
	case err == nil:
	case errors.Is(err, errStopping):
		return true, nil // the next operator performs it
	default:
		return false, c.setError(ctx, key, op, err)
	}
	switch op {
	case gadgetv1alpha1.OperationGenerate:
		return true, nil
	case gadgetv1alpha1.OperationCollect:
		if s := c.activeSub(key); s != nil {
			<-s.finished
		}
	}
	return false, nil
}

func runName(op string) string {
	if op == opSchedule {
		return "scheduled"
	}
	return op
}

func stateOr(s gadgetv1alpha1.TraceState) string {
	if s == "" {
		return "none"
	}
	return string(s)
}

// begin starts a run of tr for op (start, generate, collect, or a
// scheduled tick): it resolves the package, checks the spec, opens the
// output, attaches to a loaded program and records the run's start in
// status. warning is written as operationWarning unless the filter
// warning replaces it.
func (c *Controller) begin(ctx context.Context, tr *gadgetv1alpha1.Trace, op string, trigger *triggerInfo, warning string) error {
	mode := tr.Spec.OutputMode
	if mode == "" {
		mode = gadgetv1alpha1.OutputStatus
	}
	if !validMode(mode) {
		return fmt.Errorf("spec.outputMode %q is not supported (allowed: %s)", mode, joinModes())
	}
	privileged, err := c.privileged(ctx, tr.Namespace)
	if err != nil {
		return err
	}
	filter, err := confine(tr, privileged)
	if err != nil {
		return err
	}
	gp, err := c.findPackage(ctx, tr)
	if err != nil {
		return err
	}
	if gp == nil {
		return fmt.Errorf("spec.gadget %s: no GadgetPackage of that name (kubectl get gadgetpackages -A)", tr.Spec.Gadget)
	}
	if why := packageRunning(gp); why != "" {
		return errors.New(why)
	}
	l, err := c.load(ctx, gp)
	if err != nil {
		return err
	}
	if err := checkParams(tr, l); err != nil {
		return err
	}
	snapshot := false
	switch {
	case op == gadgetv1alpha1.OperationCollect:
		if len(l.snapshotters) == 0 {
			return fmt.Errorf("collect needs a snapshotter gadget; %s is a tracer (data sources: %s): use start and stop, or generate", l.gadget.Name, strings.Join(l.tracers, ", "))
		}
		snapshot = true
	case len(l.tracers) == 0 && op == opSchedule:
		snapshot = true // each tick takes one snapshot
	case len(l.tracers) == 0:
		return fmt.Errorf("%s is a snapshotter gadget (data sources: %s): use collect", l.gadget.Name, strings.Join(l.snapshotters, ", "))
	}

	s := newSubscriber(c, tr, op, filter, !privileged)
	s.pkg = types.NamespacedName{Namespace: gp.Namespace, Name: gp.Name}
	s.snapshot = snapshot
	s.start = c.opts.Now().Truncate(time.Second)
	switch {
	case snapshot:
		s.duration = c.opts.CollectTimeout
	case op == gadgetv1alpha1.OperationGenerate || op == opSchedule:
		s.duration = c.opts.DefaultDuration
		if tr.Spec.Duration != nil && tr.Spec.Duration.Duration > 0 {
			s.duration = tr.Spec.Duration.Duration
		}
	}
	if trigger != nil {
		s.trigger = &trigger.t
	}
	sink, err := c.newSink(tr, s)
	if err != nil {
		return err
	}
	s.sink = sink
	if warning == "" && s.filter != nil && !c.pods.anyMatch(s.filter) {
		warning = WarningNoContainer
		if s.confined && emptyFilter(tr.Spec.Filter) {
			warning = WarningNoContainerInNamespace
		}
		if s.confined && l.hasParam(ebpfstage.MntNsParam) {
			warning += warningKernelNone
		}
	}
	if err := c.attach(ctx, s, l, c.runParams(tr, l, s), !snapshot); err != nil {
		if s.run == nil { // never attached: the sink is ours to close
			_, _ = sink.Close(ctx)
		}
		if errors.Is(err, errBusy) {
			return fmt.Errorf("the trace already runs on node %s", c.opts.NodeName)
		}
		return err
	}
	defer close(s.begun)
	if f := c.opts.OnRunStarted; f != nil {
		rs := RunStarted{Trace: s.key.String(), Op: op, Started: time.Now()}
		if trigger != nil {
			rs.Scheduled = trigger.t.Scheduled
		}
		f(rs)
	}
	c.subscriptionsChanged(s.pkg)
	var skipped int64
	if trigger != nil {
		skipped = trigger.skipped
	}
	return c.patchStatus(ctx, s.key, func(tr *gadgetv1alpha1.Trace) {
		st := &tr.Status
		st.State = gadgetv1alpha1.TraceStarted
		if op == opSchedule {
			st.SkippedRuns += skipped
		} else {
			st.OperationError = ""
			st.OperationWarning = warning
		}
		if op == opSchedule && warning != "" {
			st.OperationWarning = warning
		}
		st.Output, st.OutputTruncated, st.EventCount, st.LostCount = "", false, 0, 0
		t := metav1Time(s.start)
		st.LastRunTime = &t
		st.Runs = append(st.Runs, gadgetv1alpha1.TraceRun{StartTime: t})
		if n := len(st.Runs) - s.limit; n > 0 {
			st.Runs = append([]gadgetv1alpha1.TraceRun(nil), st.Runs[n:]...)
		}
	})
}

func validMode(m gadgetv1alpha1.OutputMode) bool {
	for _, v := range outputModes {
		if v == m {
			return true
		}
	}
	return false
}

func joinModes() string {
	names := make([]string, len(outputModes))
	for i, m := range outputModes {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// newSink opens the output of one run.
func (c *Controller) newSink(tr *gadgetv1alpha1.Trace, s *subscriber) (output.Sink, error) {
	switch s.mode {
	case gadgetv1alpha1.OutputStatus:
		st := output.NewStatus(output.StatusOptions{})
		s.status = st
		return st, nil
	case gadgetv1alpha1.OutputExternalResource:
		cm, err := output.NewConfigMap(output.ConfigMapOptions{
			Client: c.opts.Client, Trace: tr.DeepCopy(), Scheme: c.opts.Scheme,
			RunID: strings.ToLower(s.start.UTC().Format("20060102t150405z")) + "-" + newRunID()[:4],
		})
		if err != nil {
			return nil, fmt.Errorf("spec.outputMode ExternalResource: %w", err)
		}
		return cm, nil
	case gadgetv1alpha1.OutputFile:
		name := tr.Spec.Output
		if name == "" {
			name = tr.Name
		}
		f, err := output.NewFile(output.FileOptions{Dir: c.opts.FileOutputDir, Namespace: tr.Namespace, Name: name})
		if err != nil {
			return nil, fmt.Errorf("spec.outputMode File: %w", err)
		}
		return f, nil
	case gadgetv1alpha1.OutputStream:
		return c.opts.Hub.Open(s.key), nil
	}
	return nil, fmt.Errorf("spec.outputMode %q is not supported (allowed: %s)", s.mode, joinModes())
}

// recover runs once per Trace after the controller starts: a run that
// status shows unfinished was interrupted; a Started Trace without a
// schedule is started again.
func (c *Controller) recover(ctx context.Context, tr *gadgetv1alpha1.Trace) error {
	key := types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}
	if c.activeSub(key) != nil {
		return nil
	}
	fresh := &gadgetv1alpha1.Trace{}
	if err := c.opts.APIReader.Get(ctx, key, fresh); err != nil {
		return nil
	}
	if n := len(fresh.Status.Runs); n > 0 && fresh.Status.Runs[n-1].EndTime == nil {
		now := metav1Time(c.opts.Now())
		if err := c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) {
			if n := len(tr.Status.Runs); n > 0 && tr.Status.Runs[n-1].EndTime == nil {
				tr.Status.Runs[n-1].EndTime = &now
				tr.Status.Runs[n-1].Error = ErrorInterrupted
			}
			if tr.Spec.Schedule != "" && tr.Status.State == gadgetv1alpha1.TraceStarted {
				tr.Status.State = gadgetv1alpha1.TraceCompleted
			}
		}); err != nil {
			return err
		}
	}
	if fresh.Status.State != gadgetv1alpha1.TraceStarted || fresh.Spec.Schedule != "" || fresh.Annotations[gadgetv1alpha1.OperationAnnotation] != "" {
		return nil
	}
	c.log.Info("starting a trace again after an operator restart", "trace", key.String())
	switch err := c.begin(ctx, fresh, gadgetv1alpha1.OperationStart, nil, WarningRestarted); {
	case err == nil, errors.Is(err, errStopping):
		return nil
	default:
		return c.patchStatus(ctx, key, func(tr *gadgetv1alpha1.Trace) {
			tr.Status.State = gadgetv1alpha1.TraceStopped
			tr.Status.OperationError = fmt.Sprintf("start again after an operator restart: %v", err)
		})
	}
}
