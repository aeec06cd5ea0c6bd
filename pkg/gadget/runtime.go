package gadget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Runtime runs gadgets through a fixed set of stages. It is safe for
// concurrent use: every run has its own instances.
type Runtime struct {
	stages []Stage
}

// New returns a runtime with the stages sorted: a dependency always
// comes before its dependents, otherwise lower priority first, then by name.
// Duplicate names, missing dependencies and cycles are errors.
func New(stages ...Stage) (*Runtime, error) {
	sorted, err := sortStages(stages)
	if err != nil {
		return nil, err
	}
	return &Runtime{stages: sorted}, nil
}

// Stages returns the stages in run order.
func (r *Runtime) Stages() []Stage { return append([]Stage(nil), r.stages...) }

func sortStages(stages []Stage) ([]Stage, error) {
	byName := map[string]Stage{}
	for _, st := range stages {
		if st == nil {
			return nil, errors.New("sort stages: nil stage")
		}
		if _, dup := byName[st.Name()]; dup {
			return nil, fmt.Errorf("sort stages: two stages named %q", st.Name())
		}
		byName[st.Name()] = st
	}
	deps := map[string][]string{}
	for _, st := range stages {
		d, ok := st.(Dependent)
		if !ok {
			continue
		}
		for _, name := range d.Dependencies() {
			if _, ok := byName[name]; !ok {
				return nil, fmt.Errorf("sort stages: %s depends on %s, which is not in the runtime", st.Name(), name)
			}
			deps[st.Name()] = append(deps[st.Name()], name)
		}
	}
	less := func(a, b Stage) bool {
		if a.Priority() != b.Priority() {
			return a.Priority() < b.Priority()
		}
		return a.Name() < b.Name()
	}
	// Kahn's algorithm, always taking the lowest-priority ready stage.
	pending := map[string]int{}
	for _, st := range stages {
		pending[st.Name()] = len(deps[st.Name()])
	}
	dependents := map[string][]string{}
	for n, ds := range deps {
		for _, d := range ds {
			dependents[d] = append(dependents[d], n)
		}
	}
	var ready, out []Stage
	for _, st := range stages {
		if pending[st.Name()] == 0 {
			ready = append(ready, st)
		}
	}
	for len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool { return less(ready[i], ready[j]) })
		st := ready[0]
		ready = ready[1:]
		out = append(out, st)
		for _, n := range dependents[st.Name()] {
			pending[n]--
			if pending[n] == 0 {
				ready = append(ready, byName[n])
			}
		}
	}
	if len(out) < len(stages) {
		return nil, fmt.Errorf("sort stages: dependency cycle: %s", findCycle(deps, pending))
	}
	return out, nil
}

// findCycle returns one cycle among the stages still pending, as
// "a -> b -> a".
func findCycle(deps map[string][]string, pending map[string]int) string {
	var start string
	for n, p := range pending {
		if p > 0 && (start == "" || n < start) {
			start = n
		}
	}
	seen := map[string]int{}
	var path []string
	n := start
	for {
		if i, ok := seen[n]; ok {
			return strings.Join(append(path[i:], n), " -> ")
		}
		seen[n] = len(path)
		path = append(path, n)
		next := ""
		for _, d := range deps[n] {
			if pending[d] > 0 && (next == "" || d < next) {
				next = d
			}
		}
		if next == "" {
			return strings.Join(path, " -> ")
		}
		n = next
	}
}

// RunOptions configure one run. The zero value is valid.
type RunOptions struct {
	// ID of the run; default: 16 random hex digits.
	ID string
	// Params for the stages and the gadget.
	Params Params
	// Logger; default: slog.Default().
	Logger *slog.Logger
}

func (o *RunOptions) defaults() {
	if o.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.ID = hex.EncodeToString(b[:])
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Params == nil {
		o.Params = Params{}
	}
}

// Info is everything a gadget offers, known after Instantiate.
type Info struct {
	DataSources []*datasource.DataSource
	Params      []ParamDesc
}

// Result is what a finished run reports.
type Result struct {
	// Stats per data source name.
	Stats map[string]datasource.Stats
}

type instance struct {
	stage Stage
	inst  StageInstance
}

// Info instantiates every stage for g, reads what they offer and closes
// them again; nothing is loaded into the kernel.
func (r *Runtime) Info(ctx context.Context, g Gadget, opts RunOptions) (*Info, error) {
	opts.defaults()
	gctx := newContext(ctx, opts.ID, opts.Logger, g, opts.Params)
	defer gctx.cancel()
	insts, err := r.instantiate(gctx)
	if err != nil {
		return nil, err
	}
	info := &Info{DataSources: gctx.DataSources(), Params: r.params(gctx, insts)}
	if err := closeAll(gctx, insts); err != nil {
		return nil, err
	}
	return info, nil
}

// Run runs g through every step and blocks until the run ends: ctx is
// cancelled, a stage calls Cancel or Fail, or a step fails.
//
// Steps pair up and unwind in reverse order: Stop for every instance whose
// Start succeeded, PostStop for every instance whose PreStart succeeded,
// Close for every instance created. Run returns the first failing step's
// error joined with any teardown errors; a run cancelled by ctx or by an
// stage's Cancel returns no error.
func (r *Runtime) Run(ctx context.Context, g Gadget, opts RunOptions) (*Result, error) {
	opts.defaults()
	gctx := newContext(ctx, opts.ID, opts.Logger, g, opts.Params)
	defer gctx.cancel()

	insts, err := r.instantiate(gctx)
	if err != nil {
		return nil, err
	}
	if err := checkParams(gctx.params, r.params(gctx, insts)); err != nil {
		return nil, errors.Join(fmt.Errorf("gadget %s: %w", g.Name, err), closeAll(gctx, insts))
	}

	var preStarted, started []instance
	runErr := func() error {
		for _, in := range insts {
			if s, ok := in.inst.(PreStarter); ok {
				if err := s.PreStart(gctx); err != nil {
					return fmt.Errorf("prestart stage %s: %w", in.stage.Name(), err)
				}
			}
			preStarted = append(preStarted, in)
		}
		for _, in := range insts {
			if s, ok := in.inst.(Starter); ok {
				if err := s.Start(gctx); err != nil {
					return fmt.Errorf("start stage %s: %w", in.stage.Name(), err)
				}
			}
			started = append(started, in)
		}
		<-gctx.ctx.Done()
		return nil
	}()
	gctx.cancel()

	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	for i := len(started) - 1; i >= 0; i-- {
		if s, ok := started[i].inst.(Stopper); ok {
			if err := s.Stop(gctx); err != nil {
				errs = append(errs, fmt.Errorf("stop stage %s: %w", started[i].stage.Name(), err))
			}
		}
	}
	for i := len(preStarted) - 1; i >= 0; i-- {
		if s, ok := preStarted[i].inst.(PostStopper); ok {
			if err := s.PostStop(gctx); err != nil {
				errs = append(errs, fmt.Errorf("poststop stage %s: %w", preStarted[i].stage.Name(), err))
			}
		}
	}
	if err := closeAll(gctx, insts); err != nil {
		errs = append(errs, err)
	}
	if err := gctx.failed(); err != nil {
		errs = append([]error{err}, errs...)
	}
	res := &Result{Stats: map[string]datasource.Stats{}}
	for _, ds := range gctx.DataSources() {
		res.Stats[ds.Name()] = ds.Stats()
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("run gadget %s: %w", g.Name, errors.Join(errs...))
	}
	return res, nil
}

func (r *Runtime) instantiate(gctx *Context) ([]instance, error) {
	var insts []instance
	for _, st := range r.stages {
		inst, err := st.Instantiate(gctx, gctx.params)
		if err != nil {
			err = fmt.Errorf("instantiate stage %s: %w", st.Name(), err)
			return nil, errors.Join(err, closeAll(gctx, insts))
		}
		if inst == nil {
			continue
		}
		insts = append(insts, instance{stage: st, inst: inst})
	}
	return insts, nil
}

func (r *Runtime) params(gctx *Context, insts []instance) []ParamDesc {
	var out []ParamDesc
	for _, st := range r.stages {
		if d, ok := st.(ParamDeclarer); ok {
			out = append(out, d.Params()...)
		}
	}
	for _, in := range insts {
		if e, ok := in.inst.(ExtraParamer); ok {
			out = append(out, e.ExtraParams(gctx)...)
		}
	}
	return out
}

func closeAll(gctx *Context, insts []instance) error {
	var errs []error
	for i := len(insts) - 1; i >= 0; i-- {
		if c, ok := insts[i].inst.(Closer); ok {
			if err := c.Close(gctx); err != nil {
				errs = append(errs, fmt.Errorf("close stage %s: %w", insts[i].stage.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}
