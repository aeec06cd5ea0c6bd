package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
)

// DefaultTimeout bounds one hook run unless RunnerOptions.Timeout says
// otherwise.
const DefaultTimeout = 5 * time.Minute

// File names inside a run's temporary directory.
const (
	fileBindingContext        = "binding-context.json"
	fileValues                = "values.json"
	fileConfigValues          = "config-values.json"
	fileValuesJSONPatch       = "values-json-patch.json"
	fileConfigValuesJSONPatch = "config-values-json-patch.json"
	fileKubernetesPatch       = "kubernetes-patch.yaml"
	fileMetrics               = "metrics.json"
	runDirPattern             = "gadgetpm-hook-"
	maxKeptStderr             = 4096
)

// ErrTimeout is wrapped by RunResult.Err when a run exceeded its timeout.
var ErrTimeout = errors.New("hook timed out")

// RunnerOptions configure a Runner. The zero value is usable.
type RunnerOptions struct {
	// Timeout bounds each run; the hook's whole process group is killed
	// when it expires. Default DefaultTimeout; Hook.Timeout overrides it
	// for one hook.
	Timeout time.Duration
	// TempDir is where each run's directory is created; default
	// os.TempDir().
	TempDir string
	// Env is the environment every hook gets (see Env).
	Env Env
	// KeepRunDirs keeps each run's directory for debugging instead of
	// removing it. Default false.
	KeepRunDirs bool
}

// Runner executes hooks. It is safe for concurrent use; it keeps one rate
// limiter per hook (settings.executionMinInterval and executionBurst).
type Runner struct {
	opts RunnerOptions
	// now and sleep are test seams for the rate limiter.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu sync.Mutex
	// limiters by Hook.ID(); guarded by mu.
	limiters map[string]*rate.Limiter
}

// NewRunner returns a Runner; defaults are applied here.
func NewRunner(opts RunnerOptions) *Runner {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	return &Runner{opts: opts, now: time.Now, sleep: sleepCtx, limiters: map[string]*rate.Limiter{}}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RunInput is what a run gets.
type RunInput struct {
	// Binding labels the run in logs and metrics ("kubernetes:pods").
	Binding string
	// Contexts are written to BINDING_CONTEXT_PATH as a JSON array.
	Contexts []BindingContext
	// Values and ConfigValues are written to VALUES_PATH and
	// CONFIG_VALUES_PATH; nil writes {}.
	Values       Values
	ConfigValues Values
}

// RunResult is what a run produced. Everything the hook wrote is read back
// even when it failed, so object patches can still be applied.
type RunResult struct {
	// ExitCode of the hook; -1 when it did not exit on its own.
	ExitCode int
	// Duration from start to exit.
	Duration time.Duration
	// Err is nil when the hook exited 0; otherwise it names the hook and
	// why (exit code and the end of its stderr, or the timeout).
	Err error
	// ValuesPatch and ConfigValuesPatch are the JSON patches the hook wrote.
	ValuesPatch       jsonpatch.Patch
	ConfigValuesPatch jsonpatch.Patch
	// KubernetesPatch is the raw content of KUBERNETES_PATCH_PATH.
	KubernetesPatch []byte
	// Metrics are the operations the hook wrote to METRICS_PATH.
	Metrics []MetricOp
	// OutputErr reports unreadable result files (bad JSON patch or metrics
	// lines), naming the file.
	OutputErr error
}

// Run executes hook h once: it waits for the hook's rate limit, writes the
// input files into a fresh directory, runs the executable in the package
// directory with the minimal environment and the timeout, streams its
// output into the logger from ctx (with package, hook and binding), and
// reads back the result files. Only a failure to start (or ctx cancelled
// while waiting) returns an error; everything else is in RunResult.
func (r *Runner) Run(ctx context.Context, h *Hook, in RunInput) (*RunResult, error) {
	if h == nil || h.Config == nil {
		return nil, errors.New("run hook: the hook has no config; create hooks with Load")
	}
	if err := r.wait(ctx, h); err != nil {
		return nil, fmt.Errorf("run hook %s: wait for rate limit: %w", h.Name, err)
	}
	dir, err := os.MkdirTemp(r.opts.TempDir, runDirPattern)
	if err != nil {
		return nil, fmt.Errorf("run hook %s: create run directory: %w", h.Name, err)
	}
	if !r.opts.KeepRunDirs {
		defer os.RemoveAll(dir)
	}
	files, err := writeInputs(dir, in)
	if err != nil {
		return nil, fmt.Errorf("run hook %s: %w", h.Name, err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("run hook %s: %w", h.Name, err)
	}

	log := logr.FromContextOrDiscard(ctx).WithValues("package", h.PackageKey, "hook", h.Name, "binding", in.Binding)
	stdout, stderr := newLineLogger(log, "stdout"), newLineLogger(log, "stderr")
	errTail := &tailWriter{max: maxKeptStderr}
	timeout := r.opts.Timeout
	if h.Timeout > 0 {
		timeout = h.Timeout
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := command(runCtx, h.Path, nil, h.Dir, r.opts.Env.build(tmp, files), stdout, io.MultiWriter(stderr, errTail))

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run hook %s: start %s: %w", h.Name, h.Path, err)
	}
	waitErr := cmd.Wait()
	res := &RunResult{Duration: time.Since(start), ExitCode: -1}
	killGroup(cmd)
	stdout.Flush()
	stderr.Flush()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	switch {
	case runCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		res.Err = fmt.Errorf("hook %s: %w after %s; its process group was killed", h.Name, ErrTimeout, timeout)
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("hook %s: cancelled: %w", h.Name, ctx.Err())
	case waitErr != nil && !errors.Is(waitErr, exec.ErrWaitDelay):
		msg := errTail.String()
		if msg == "" {
			msg = "no output on stderr"
		}
		res.Err = fmt.Errorf("hook %s: %v: %s", h.Name, waitErr, msg)
	}
	log.V(1).Info("hook finished", "exitCode", res.ExitCode, "duration", res.Duration.String())
	res.OutputErr = readOutputs(dir, res)
	return res, nil
}

// wait blocks until the hook's rate limit allows a run.
func (r *Runner) wait(ctx context.Context, h *Hook) error {
	s := h.Config.Settings
	if s.ExecutionMinInterval <= 0 {
		return nil
	}
	r.mu.Lock()
	lim := r.limiters[h.ID()]
	if lim == nil {
		burst := s.ExecutionBurst
		if burst < 1 {
			burst = 1
		}
		lim = rate.NewLimiter(rate.Every(s.ExecutionMinInterval), burst)
		r.limiters[h.ID()] = lim
	}
	res := lim.ReserveN(r.now(), 1)
	r.mu.Unlock()
	if !res.OK() {
		return errors.New("rate limit cannot be satisfied")
	}
	if err := r.sleep(ctx, res.DelayFrom(r.now())); err != nil {
		res.Cancel()
		return err
	}
	return nil
}

// Forget drops the rate limiters of a package's hooks.
func (r *Runner) Forget(packageKey string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.limiters {
		if len(id) > len(packageKey) && id[:len(packageKey)+1] == packageKey+"/" {
			delete(r.limiters, id)
		}
	}
}

func writeInputs(dir string, in RunInput) (map[string]string, error) {
	files := map[string]string{
		EnvBindingContextPath:        filepath.Join(dir, fileBindingContext),
		EnvValuesPath:                filepath.Join(dir, fileValues),
		EnvConfigValuesPath:          filepath.Join(dir, fileConfigValues),
		EnvValuesJSONPatchPath:       filepath.Join(dir, fileValuesJSONPatch),
		EnvConfigValuesJSONPatchPath: filepath.Join(dir, fileConfigValuesJSONPatch),
		EnvKubernetesPatchPath:       filepath.Join(dir, fileKubernetesPatch),
		EnvMetricsPath:               filepath.Join(dir, fileMetrics),
	}
	contexts := in.Contexts
	if contexts == nil {
		contexts = []BindingContext{}
	}
	bc, err := json.Marshal(contexts)
	if err != nil {
		return nil, fmt.Errorf("encode binding context: %w", err)
	}
	values, err := in.Values.JSON()
	if err != nil {
		return nil, fmt.Errorf("encode values: %w", err)
	}
	config, err := in.ConfigValues.JSON()
	if err != nil {
		return nil, fmt.Errorf("encode config values: %w", err)
	}
	for env, data := range map[string][]byte{
		EnvBindingContextPath:        bc,
		EnvValuesPath:                values,
		EnvConfigValuesPath:          config,
		EnvValuesJSONPatchPath:       nil,
		EnvConfigValuesJSONPatchPath: nil,
		EnvKubernetesPatchPath:       nil,
		EnvMetricsPath:               nil,
	} {
		// Output files exist and are empty, so hooks may append to them.
		if err := os.WriteFile(files[env], data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", env, err)
		}
	}
	return files, nil
}

func readOutputs(dir string, res *RunResult) error {
	var errs []error
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("read %s: %w", name, err))
		}
		return data
	}
	var err error
	if res.ValuesPatch, err = ParseJSONPatch(read(fileValuesJSONPatch)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvValuesJSONPatchPath, err))
	}
	if res.ConfigValuesPatch, err = ParseJSONPatch(read(fileConfigValuesJSONPatch)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvConfigValuesJSONPatchPath, err))
	}
	res.KubernetesPatch = read(fileKubernetesPatch)
	if res.Metrics, err = ParseMetrics(read(fileMetrics)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvMetricsPath, err))
	}
	return errors.Join(errs...)
}

// tailWriter keeps the last max bytes written.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}
