package gadget

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Gadget is what a run executes: the files of a package's gadget/ folder.
type Gadget struct {
	// Name for logs and errors, e.g. the package name.
	Name string
	// Object is program.bpf.o.
	Object []byte
	// Metadata is gadget.yaml; may be empty.
	Metadata []byte
	// BTFGen is an Inspektor Gadget image's btfgen archive (BTFGenFile),
	// the BTF of kernels that have none of their own; used only on such a
	// kernel. May be nil.
	BTFGen []byte
}

// Context is what every stage of one run shares: the run's id, context,
// logger, the gadget, the data-source registry, vars and params. It is safe
// for concurrent use.
type Context struct {
	id     string
	ctx    context.Context
	cancel context.CancelFunc
	logger *slog.Logger
	gadget Gadget
	params Params

	mu sync.Mutex
	// guarded by mu
	sources []*datasource.DataSource
	vars    map[string]any
	failure error
}

func newContext(ctx context.Context, id string, logger *slog.Logger, g Gadget, params Params) *Context {
	ctx, cancel := context.WithCancel(ctx)
	return &Context{id: id, ctx: ctx, cancel: cancel, logger: logger, gadget: g, params: params, vars: map[string]any{}}
}

// ID of the run.
func (c *Context) ID() string { return c.id }

// Context is cancelled when the run should end: by its caller, a timeout, a
// limiter, a finished snapshot or a failure.
func (c *Context) Context() context.Context { return c.ctx }

// Logger of the run.
func (c *Context) Logger() *slog.Logger { return c.logger }

// Gadget being run.
func (c *Context) Gadget() Gadget { return c.gadget }

// Params the run was given.
func (c *Context) Params() Params { return c.params }

// Cancel ends the run normally (a limit was reached, a snapshot is done).
func (c *Context) Cancel() { c.cancel() }

// Fail ends the run with err, which Run returns. The first failure wins.
func (c *Context) Fail(err error) {
	c.mu.Lock()
	if c.failure == nil {
		c.failure = err
	}
	c.mu.Unlock()
	c.cancel()
}

func (c *Context) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failure
}

// RegisterDataSource adds a data source; names are unique in a run.
func (c *Context) RegisterDataSource(ds *datasource.DataSource) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.sources {
		if o.Name() == ds.Name() {
			return fmt.Errorf("register data source %s: already registered", ds.Name())
		}
	}
	c.sources = append(c.sources, ds)
	return nil
}

// DataSources returns the registered data sources in registration order.
func (c *Context) DataSources() []*datasource.DataSource {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*datasource.DataSource(nil), c.sources...)
}

// DataSource returns the named data source or nil.
func (c *Context) DataSource(name string) *datasource.DataSource {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ds := range c.sources {
		if ds.Name() == name {
			return ds
		}
	}
	return nil
}

// SetVar stores a value stages share (e.g. a boot-time clock).
func (c *Context) SetVar(name string, v any) {
	c.mu.Lock()
	c.vars[name] = v
	c.mu.Unlock()
}

// Var returns a stored value.
func (c *Context) Var(name string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vars[name]
	return v, ok
}

// VarClock is the var holding the datasource.Clock that turns the run's
// boot-time timestamps into wall-clock time; the eBPF stage sets it.
const VarClock = "clock"
