package gadget

// DataOperator is one kind of processing a gadget run may use: the eBPF
// loader, an enricher, a filter, a sink. It is stateless; each run gets its
// own instance.
type DataOperator interface {
	// Name identifies the operator in errors, logs and dependencies.
	Name() string
	// Priority orders operators: lower runs earlier in every step (and
	// later in teardown).
	Priority() int
	// InstantiateDataOperator returns the operator's instance for one run,
	// or nil (and no error) to opt out of it, e.g. a filter without
	// --filter. It may register data sources and fields and subscribe to
	// data sources registered by operators before it.
	InstantiateDataOperator(gctx *Context, params Params) (DataOperatorInstance, error)
}

// DataOperatorInstance is an operator's state for one run. The optional
// steps are separate interfaces (PreStarter, Starter, Stopper, PostStopper,
// Closer, ExtraParamer), implemented as needed.
type DataOperatorInstance interface {
	Name() string
}

// Dependent is implemented by operators that must come after others,
// whatever their priorities.
type Dependent interface {
	// Dependencies are the names of operators this one needs; each must be
	// in the runtime.
	Dependencies() []string
}

// ParamDeclarer is implemented by operators with their own params (a
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

// OperatorFunc makes a DataOperator out of a function, for operators without
// own state or dependencies.
type OperatorFunc struct {
	OpName     string
	OpPriority int
	Fn         func(gctx *Context, params Params) (DataOperatorInstance, error)
}

var _ DataOperator = OperatorFunc{}

// Name implements DataOperator.
func (o OperatorFunc) Name() string { return o.OpName }

// Priority implements DataOperator.
func (o OperatorFunc) Priority() int { return o.OpPriority }

// InstantiateDataOperator implements DataOperator.
func (o OperatorFunc) InstantiateDataOperator(gctx *Context, params Params) (DataOperatorInstance, error) {
	return o.Fn(gctx, params)
}
