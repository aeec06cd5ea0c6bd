package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"golang.org/x/time/rate"

	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
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
	// Credentials, when set, give every run a kubeconfig of its own in
	// its run directory as KUBECONFIG, in place of Env.Kube; a hook's own
	// Hook.Credentials take precedence. Default nil: Env.Kube (the
	// operator's own credentials).
	Credentials Credentials
	// KeepRunDirs keeps each run's directory for debugging instead of
	// removing it. Default false.
	KeepRunDirs bool
	// OutputLinesPerSecond and OutputBurst bound how many lines of one
	// hook's output reach the log (a token bucket per hook, shared by its
	// runs and both streams), so a hook printing without pause cannot
	// flood the log or slow the operator. Lines beyond it are dropped and
	// counted; the run logs how many. Defaults DefaultOutputLinesPerSecond
	// and DefaultOutputBurst; a negative rate logs every line.
	OutputLinesPerSecond float64
	OutputBurst          int
	// OutputTail is how many of its last output lines each hook keeps
	// for the dump (Runner.Output), dropped ones included. Default
	// DefaultOutputTail.
	OutputTail int
	// MaxResultFileBytes caps each result file a run leaves (values and
	// config values patches, Kubernetes patch, metrics): one over it fails
	// the run (RunResult.OutputErr) and is never read whole
	// (--max-hook-result-size). Default DefaultMaxResultFileBytes.
	MaxResultFileBytes int64
	// Sandbox runs each hook in its own PID and mount namespace as the
	// hook user, seeing its package read-only, its run directory and
	// nothing of the operator's (see package sandbox): a *sandbox.Sandbox
	// here or a *sandbox.Remote through a sandbox server; TempDir is
	// hidden from it but for the run's own directory. Default nil: hooks
	// run as the operator's user, in their own process group, and still
	// die with the operator.
	Sandbox sandbox.Launcher
}

// Defaults of RunnerOptions' output limits.
const (
	DefaultOutputLinesPerSecond = 200
	DefaultOutputBurst          = 2000
	DefaultOutputTail           = 50
	// DefaultMaxResultFileBytes is the default cap of one result file.
	DefaultMaxResultFileBytes = 8 << 20
	// MaxOutputTailLine is how many bytes of one line the tail keeps; the
	// log gets the whole line.
	MaxOutputTailLine = 1024
)

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
	// outputs by Hook.ID(): the output rate limit and tail; guarded by mu
	// (each hookOutput guards its own tail).
	outputs map[string]*hookOutput
}

// NewRunner returns a Runner; defaults are applied here.
func NewRunner(opts RunnerOptions) *Runner {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.OutputLinesPerSecond == 0 {
		opts.OutputLinesPerSecond = DefaultOutputLinesPerSecond
	}
	if opts.OutputBurst <= 0 {
		opts.OutputBurst = DefaultOutputBurst
	}
	if opts.OutputTail <= 0 {
		opts.OutputTail = DefaultOutputTail
	}
	if opts.MaxResultFileBytes <= 0 {
		opts.MaxResultFileBytes = DefaultMaxResultFileBytes
	}
	return &Runner{opts: opts, now: time.Now, sleep: sleepCtx, limiters: map[string]*rate.Limiter{}, outputs: map[string]*hookOutput{}}
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
	// Queue is the queue the run's task is in, for the log; empty leaves
	// the field out.
	Queue string
	// RunID tells this run's log lines from other runs'; default a new
	// random one (NewRunID).
	RunID string
	// Logger receives every line of the hook's output and the run's own
	// lines, with the package, hook, binding, queue and run ID as fields.
	// Default the logger in the run's context, else none.
	Logger logr.Logger
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
	// RunID is the run's ID, as logged.
	RunID string
	// DroppedLines counts output lines the output limit kept out of the
	// log.
	DroppedLines int64
}

// NewRunID returns a random run ID: 8 hex digits, enough to tell runs
// apart in a log.
func NewRunID() string {
	return strconv.FormatUint(rand.Uint64()&0xffffffff|1<<32, 16)[1:]
}

// Run executes hook h once: it waits for the hook's rate limit, writes the
// input files into a fresh directory, runs the executable in the package
// directory with the minimal environment and the timeout, streams its
// output into in.Logger (with package, hook, binding, queue and run ID)
// within the hook's output limit, keeps its last lines for Output, and
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
	env := r.opts.Env
	if env.Kube, err = r.kubeEnv(ctx, h, dir, env.Kube); err != nil {
		return nil, fmt.Errorf("run hook %s: %w", h.Name, err)
	}

	if in.RunID == "" {
		in.RunID = NewRunID()
	}
	log := RunLogger(ctx, h, in)
	out := &runOutput{hook: r.output(h), log: log, name: h.Name, perSecond: r.opts.OutputLinesPerSecond, run: in.RunID}
	stdout, stderr := newLineLogger(log, "stdout"), newLineLogger(log, "stderr")
	stdout.out, stderr.out = out, out
	errTail := &tailWriter{max: maxKeptStderr}
	timeout := r.opts.Timeout
	if h.Timeout > 0 {
		timeout = h.Timeout
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	launcher := r.opts.Sandbox
	if sb, ok := launcher.(*sandbox.Sandbox); launcher == nil || (ok && sb == nil) {
		launcher = (*sandbox.Sandbox)(nil)
	} else if env.Home == "" {
		// The operator's HOME is neither readable nor writable to the
		// hook user: tools that keep settings and caches there (kubectl,
		// helm) get the run's own directory.
		env.Home = tmp
	}
	start := time.Now()
	// The launcher gives the run directory to the hook user once every
	// file of the run is written.
	exitCode, waitErr := launcher.Launch(runCtx, sandbox.Cmd{
		Path: h.Path, Dir: h.Dir, Env: env.build(tmp, files), Stdout: stdout, Stderr: io.MultiWriter(stderr, errTail),
		Package: h.Dir, RunDir: dir, Hide: []string{r.opts.TempDir}, WaitDelay: pipeDrainDelay,
	})
	var startErr *sandbox.StartError
	if errors.As(waitErr, &startErr) {
		return nil, fmt.Errorf("run hook %s: start %s: %w", h.Name, h.Path, startErr.Err)
	}
	res := &RunResult{Duration: time.Since(start), ExitCode: exitCode, RunID: in.RunID}
	stdout.Flush()
	stderr.Flush()
	res.DroppedLines = out.finish()
	switch {
	case runCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		res.Err = fmt.Errorf("hook %s: %w after %s; its process group was killed", h.Name, ErrTimeout, timeout)
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("hook %s: cancelled: %w", h.Name, ctx.Err())
	case waitErr != nil:
		msg := errTail.String()
		if msg == "" {
			msg = "no output on stderr"
		}
		res.Err = fmt.Errorf("hook %s: %v: %s", h.Name, waitErr, msg)
	}
	log.V(1).Info("hook finished", "exitCode", res.ExitCode, "duration", res.Duration.String())
	res.OutputErr = readOutputs(dir, r.opts.MaxResultFileBytes, res)
	return res, nil
}

// RunLogger is the logger of one run: in.Logger (else the one in ctx)
// with the package, hook, binding, queue and run ID as fields.
func RunLogger(ctx context.Context, h *Hook, in RunInput) logr.Logger {
	log := in.Logger
	if log.GetSink() == nil {
		log = logr.FromContextOrDiscard(ctx)
	}
	kv := []any{"package", h.PackageKey, "hook", h.Name, "binding", in.Binding}
	if in.Queue != "" {
		kv = append(kv, "queue", in.Queue)
	}
	if in.RunID != "" {
		kv = append(kv, "runID", in.RunID)
	}
	return log.WithValues(kv...)
}

// output returns the hook's output state, created on first use.
func (r *Runner) output(h *Hook) *hookOutput {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.outputs[h.ID()]
	if o == nil {
		limit := rate.Inf
		if r.opts.OutputLinesPerSecond > 0 {
			limit = rate.Limit(r.opts.OutputLinesPerSecond)
		}
		o = &hookOutput{limiter: rate.NewLimiter(limit, r.opts.OutputBurst), tail: make([]OutputLine, 0, r.opts.OutputTail), max: r.opts.OutputTail}
		r.outputs[h.ID()] = o
	}
	return o
}

// Output returns the last lines the hook with this ID (Hook.ID) printed,
// oldest first, across its runs since the runner last forgot its package;
// nil when it has printed nothing.
func (r *Runner) Output(hookID string) []OutputLine {
	r.mu.Lock()
	o := r.outputs[hookID]
	r.mu.Unlock()
	if o == nil {
		return nil
	}
	return o.lines()
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

// Forget drops the rate limiters and output tails of a package's hooks.
func (r *Runner) Forget(packageKey string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.limiters {
		if len(id) > len(packageKey) && id[:len(packageKey)+1] == packageKey+"/" {
			delete(r.limiters, id)
		}
	}
	for id := range r.outputs {
		if len(id) > len(packageKey) && id[:len(packageKey)+1] == packageKey+"/" {
			delete(r.outputs, id)
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

// ErrResultTooLarge is wrapped by RunResult.OutputErr when a result file
// is over RunnerOptions.MaxResultFileBytes.
var ErrResultTooLarge = errors.New("result file over the size limit")

// readOutputs reads the result files of a run in dir, each at most limit
// bytes: a larger one is an error naming the file and the limit (the
// caller names the hook), and is not read (nor parsed) at all.
func readOutputs(dir string, limit int64, res *RunResult) error {
	var errs []error
	read := func(env, name string) ([]byte, bool) {
		data, err := readCapped(filepath.Join(dir, name), limit)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, true
		case errors.Is(err, ErrResultTooLarge):
			errs = append(errs, fmt.Errorf("$%s (%s): %w: it holds more than %d bytes, the limit of one result file; write less, or raise --max-hook-result-size", env, name, err, limit))
			return nil, false
		case err != nil:
			errs = append(errs, fmt.Errorf("read %s: %w", name, err))
		}
		return data, true
	}
	var err error
	if data, ok := read(EnvValuesJSONPatchPath, fileValuesJSONPatch); ok {
		if res.ValuesPatch, err = ParseJSONPatch(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvValuesJSONPatchPath, err))
		}
	}
	if data, ok := read(EnvConfigValuesJSONPatchPath, fileConfigValuesJSONPatch); ok {
		if res.ConfigValuesPatch, err = ParseJSONPatch(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvConfigValuesJSONPatchPath, err))
		}
	}
	res.KubernetesPatch, _ = read(EnvKubernetesPatchPath, fileKubernetesPatch)
	if data, ok := read(EnvMetricsPath, fileMetrics); ok {
		if res.Metrics, err = ParseMetrics(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvMetricsPath, err))
		}
	}
	return errors.Join(errs...)
}

// readCapped reads the file at p when it holds at most limit bytes; its
// size is checked before it is read, and it is read through the limit
// since the hook's processes may still be writing it.
func readCapped(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > limit {
		return nil, ErrResultTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, ErrResultTooLarge
	}
	return data, nil
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
