package gadget

// Stage is one step of a gadget run's pipeline: the eBPF loader, an
// enricher, a filter, a limiter, a sink. Stages run in priority order. A
// Stage is stateless; each run gets its own instance.
type Stage interface {
	// Name identifies the stage in errors, logs and dependencies.
	Name() string
	// Priority orders stages: lower runs earlier in every step (and
	// later in teardown).
	Priority() int
	// Instantiate returns the stage's instance for one run,
	// or nil (and no error) to opt out of it, e.g. a filter without
	// --filter. It may register data sources and fields and subscribe to
	// data sources registered by stages before it.
	Instantiate(gctx *Context, params Params) (StageInstance, error)
}

// StageInstance is a stage's state for one run. The optional
// steps are separate interfaces (PreStarter, Starter, Stopper, PostStopper,
// Closer, ExtraParamer), implemented as needed.
type StageInstance interface {
	Name() string
}

// Dependent is implemented by stages that must come after others,
// whatever their priorities.
type Dependent interface {
	// Dependencies are the names of stages this one needs; each must be
	// in the runtime.
	Dependencies() []string
}

// ParamDeclarer is implemented by stages with their own params (a
// filter's "filter", a limiter's "max-events").
type ParamDeclarer interface {
	Params() []ParamDesc
}

// ExtraParamer is implemented by instances whose params depend on the
// gadget (an eBPF object's constants); they are known after Instantiate.
type ExtraParamer interface {
	ExtraParams(gctx *Context) []ParamDesc
}

// PreStarter prepares the run: load into the kernel, open files.
type PreStarter interface {
	PreStart(gctx *Context) error
}

// Starter starts producing or consuming: attach programs, start readers.
// Goroutines it starts belong to the instance and end in Stop.
type Starter interface {
	Start(gctx *Context) error
}

// Stopper stops producing and waits for the instance's goroutines.
type Stopper interface {
	Stop(gctx *Context) error
}

// PostStopper runs after every instance stopped: flush sinks, read final
// counters.
type PostStopper interface {
	PostStop(gctx *Context) error
}

// Closer releases what Instantiate acquired. It is called exactly once for
// every instance returned, whatever happened after.
type Closer interface {
	Close(gctx *Context) error
}

// StageFunc makes a Stage out of a function, for stages without own state
// or dependencies.
type StageFunc struct {
	StageName     string
	StagePriority int
	Fn            func(gctx *Context, params Params) (StageInstance, error)
}

var _ Stage = StageFunc{}

// Name implements Stage.
func (f StageFunc) Name() string { return f.StageName }

// Priority implements Stage.
func (f StageFunc) Priority() int { return f.StagePriority }

// Instantiate implements Stage.
func (f StageFunc) Instantiate(gctx *Context, params Params) (StageInstance, error) {
	return f.Fn(gctx, params)
}
