package hooks

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"

	"github.com/gadgetpm/gadgetpm/queue"
)

// ObjectPatcher applies the object patches a hook wrote to
// KUBERNETES_PATCH_PATH (pkg/objectpatch implements it).
type ObjectPatcher interface {
	Apply(ctx context.Context, docs []byte) error
}

// ValuesSource gives a run its values and takes its values patches.
// ValuesStore implements it.
type ValuesSource interface {
	Values() (Values, error)
	ConfigValues() Values
	// Patch applies a run's config-values and values patches as a whole:
	// both are validated before the config values are persisted, and
	// nothing changes when either is rejected.
	Patch(ctx context.Context, configOps, valuesOps jsonpatch.Patch) error
}

// TaskDeps are the services every hook-run task uses.
type TaskDeps struct {
	// Runner executes the hook. Required.
	Runner *Runner
	// Snapshots provides kubernetes bindings' snapshots; nil gives empty
	// snapshots.
	Snapshots Snapshots
	// Patcher applies object patches; nil makes a run that wrote object
	// patches fail with an error saying so.
	Patcher ObjectPatcher
	// Metrics exports the hook's metrics and counts runs; nil skips both.
	Metrics *Metrics
	// Observer learns how each run ended (for GadgetPackage status.hooks);
	// nil skips it.
	Observer RunObserver
	// Logger receives the hooks' output lines and the runs' own lines
	// (see RunInput.Logger). Default the logger in the task's context.
	Logger logr.Logger
}

// RunObserver is told about every finished run of a hook-run task. It is
// called from the queue's worker with no lock held and must not block long.
type RunObserver interface {
	// HookRan reports a finished run; err is nil after a success and after
	// a failure the bindings allow.
	HookRan(packageKey, hook string, finished time.Time, err error)
}

// RunTask is the queue task that runs one hook for one or more triggers.
// Consecutive RunTasks of the same hook merge (their binding contexts are
// concatenated) when both come from schedule or kubernetes bindings with
// the same allowFailure.
type RunTask struct {
	deps         TaskDeps
	hook         *Hook
	values       ValuesSource
	triggers     []Trigger
	allowFailure bool
	// queue the task is in, for the log.
	queue string
}

var (
	_ queue.Task      = (*RunTask)(nil)
	_ queue.Mergeable = (*RunTask)(nil)
)

// NewRunTask returns a task running h for triggers with the values from
// values. allowFailure is taken from the triggers' bindings: the task
// tolerates a failed hook only when every binding allows it.
func NewRunTask(deps TaskDeps, h *Hook, values ValuesSource, triggers ...Trigger) *RunTask {
	t := &RunTask{deps: deps, hook: h, values: values, triggers: append([]Trigger(nil), triggers...)}
	t.allowFailure = len(triggers) > 0
	for _, tr := range triggers {
		if !h.allowsFailure(tr) {
			t.allowFailure = false
		}
	}
	return t
}

func (h *Hook) allowsFailure(t Trigger) bool {
	c := h.common(t)
	return c != nil && c.AllowFailure
}

// InQueue records the name of the queue the task goes to, so its log
// lines say it; it returns t.
func (t *RunTask) InQueue(name string) *RunTask {
	t.queue = name
	return t
}

// Hook is the hook the task runs.
func (t *RunTask) Hook() *Hook { return t.hook }

// Triggers returns a copy of the task's triggers.
func (t *RunTask) Triggers() []Trigger { return append([]Trigger(nil), t.triggers...) }

// Name is "hook-run <hook>".
func (t *RunTask) Name() string { return "hook-run " + t.hook.Name }

// MergeKey is non-empty only for tasks of schedule and kubernetes bindings.
func (t *RunTask) MergeKey() string {
	for _, tr := range t.triggers {
		if tr.Type != Schedule && tr.Type != Kubernetes {
			return ""
		}
	}
	return "hook-run " + t.hook.ID() + " allowFailure=" + strconv.FormatBool(t.allowFailure)
}

// Merge returns a new task with t's triggers followed by next's. A next that
// is not a RunTask for the same hook is not merged: t is returned unchanged
// (the queue only merges tasks with equal MergeKeys).
func (t *RunTask) Merge(next queue.Task) queue.Task {
	n, ok := next.(*RunTask)
	if !ok || n.hook != t.hook || n.MergeKey() != t.MergeKey() {
		return t
	}
	merged := *t
	merged.triggers = append(append([]Trigger(nil), t.triggers...), n.triggers...)
	return &merged
}

// bindingLabel names the task's bindings for logs and metrics.
func (t *RunTask) bindingLabel() string {
	seen := map[string]bool{}
	var labels []string
	for _, tr := range t.triggers {
		if l := tr.Label(); !seen[l] {
			seen[l] = true
			labels = append(labels, l)
		}
	}
	sort.Strings(labels)
	return strings.Join(labels, ",")
}

// Execute runs the hook and applies its results: object patches always
// (even when the hook failed), then — only after a successful run — values
// patches (validated against the package's schema), config-values patches
// (persisted) and metrics. A failed hook whose bindings allow failure is
// logged and counted and completes the task; any other failure is returned
// so the queue retries.
func (t *RunTask) Execute(ctx context.Context) error {
	h := t.hook
	if h == nil || h.Config == nil || t.deps.Runner == nil {
		return errors.New("run hook: task without a loaded hook or a runner; create it with NewRunTask from Load's hooks")
	}
	binding := t.bindingLabel()
	in := RunInput{Binding: binding, Queue: t.queue, RunID: NewRunID(), Logger: t.deps.Logger}
	log := RunLogger(ctx, h, in)
	in.Contexts = h.BindingContexts(t.triggers, t.deps.Snapshots)
	if t.values != nil {
		v, err := t.values.Values()
		if err != nil {
			return fmt.Errorf("run hook %s: read values: %w", h.Name, err)
		}
		in.Values, in.ConfigValues = v, t.values.ConfigValues()
	}
	res, err := t.deps.Runner.Run(ctx, h, in)
	if err != nil {
		t.record(binding, OutcomeFailure, res)
		if t.deps.Observer != nil {
			t.deps.Observer.HookRan(h.PackageKey, h.Name, time.Now(), err)
		}
		return err
	}

	var patchErr error
	if len(strings.TrimSpace(string(res.KubernetesPatch))) > 0 {
		if t.deps.Patcher == nil {
			patchErr = fmt.Errorf("hook %s wrote object patches but no object patcher is configured", h.Name)
		} else if err := t.deps.Patcher.Apply(ctx, res.KubernetesPatch); err != nil {
			patchErr = fmt.Errorf("apply object patches of hook %s: %w", h.Name, err)
		}
	}

	hookErr := res.Err
	if hookErr == nil && res.OutputErr != nil {
		hookErr = fmt.Errorf("hook %s wrote unreadable results: %w", h.Name, res.OutputErr)
	}
	if hookErr == nil {
		hookErr = t.applyResults(ctx, res)
	}
	switch {
	case hookErr == nil:
		t.record(binding, OutcomeSuccess, res)
	case ctx.Err() != nil:
		// Cancelled (the package was updated or removed): not the hook's
		// failure to tolerate, and the queue must see the cancellation.
		t.record(binding, OutcomeFailure, res)
	case t.allowFailure:
		log.Error(hookErr, "hook failed; its binding allows failure, so the run counts as done")
		t.record(binding, OutcomeAllowedFailure, res)
		hookErr = nil
	default:
		// Info, not error: the queue retries the task, and logs one error
		// line when it gives up.
		log.Info("hook failed; its task will be retried", "error", hookErr.Error(), "exitCode", res.ExitCode)
		t.record(binding, OutcomeFailure, res)
	}
	err = errors.Join(hookErr, patchErr)
	if t.deps.Observer != nil {
		t.deps.Observer.HookRan(h.PackageKey, h.Name, time.Now(), err)
	}
	return err
}

func (t *RunTask) applyResults(ctx context.Context, res *RunResult) error {
	h := t.hook
	if len(res.ValuesPatch) > 0 || len(res.ConfigValuesPatch) > 0 {
		if t.values == nil {
			return fmt.Errorf("hook %s wrote values patches but the package has no values store", h.Name)
		}
		if err := t.values.Patch(ctx, res.ConfigValuesPatch, res.ValuesPatch); err != nil {
			return fmt.Errorf("hook %s: %w", h.Name, err)
		}
	}
	if t.deps.Metrics != nil && len(res.Metrics) > 0 {
		if err := t.deps.Metrics.Apply(h.PackageKey, h.Name, res.Metrics); err != nil {
			return fmt.Errorf("hook %s: %w", h.Name, err)
		}
	}
	return nil
}

func (t *RunTask) record(binding, outcome string, res *RunResult) {
	if t.deps.Metrics == nil {
		return
	}
	var d time.Duration
	if res != nil {
		d = res.Duration
	}
	t.deps.Metrics.RecordRun(t.hook.PackageKey, t.hook.Name, binding, outcome, d)
}

// Queue is the queue a trigger's run belongs in: the binding's `queue`
// field, empty for the package's main queue (onStartup and the Helm bindings
// always run in the main queue). The coordinator turns it into a queue name.
func (h *Hook) Queue(t Trigger) string {
	if c := h.common(t); c != nil {
		return c.Queue
	}
	return ""
}
