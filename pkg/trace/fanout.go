package trace

import (
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
)

// FanoutName is the name of the fan-out stage.
const FanoutName = "trace-fanout"

// FanoutPriority runs the fan-out after the enricher, the field filter
// and the limiter's counting (which all shape one shared stream) and
// before any sink.
const FanoutPriority = 95

// fanout is the stage that hands every record of a shared run to
// each subscribed Trace: through each subscriber's container filter (which
// confines a Trace to its namespace, see confine), then, encoded once as
// JSON, into its sink.
type fanout struct{ c *Controller }

var _ gadget.Stage = fanout{}

func (fanout) Name() string  { return FanoutName }
func (fanout) Priority() int { return FanoutPriority }

// Instantiate opts out of runs it does not know (Info).
func (f fanout) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	run := f.c.runByID(gctx.ID())
	if run == nil {
		return nil, nil
	}
	var clock datasource.Clock
	if v, ok := gctx.Var(gadget.VarClock); ok {
		clock, _ = v.(datasource.Clock)
	}
	if v, ok := gctx.Var(ebpfstage.VarMntNsFilter); ok {
		if f, ok := v.(*ebpfstage.MntNsFilter); ok {
			run.mntns.Store(f)
		}
	}
	for _, ds := range gctx.DataSources() {
		in := &dispatch{run: run, clock: clock, container: ds.Field(enricher.FieldContainer)}
		ds.Subscribe(FanoutName, FanoutPriority, in.handle)
	}
	return &fanoutInstance{run: run}, nil
}

type fanoutInstance struct{ run *sharedRun }

func (*fanoutInstance) Name() string { return FanoutName }

// Start runs after every stage before it started: the program is
// attached, the run is live.
func (in *fanoutInstance) Start(*gadget.Context) error {
	in.run.startedOnce.Do(func() { close(in.run.started) })
	// a container may have come since the run's params were computed
	in.run.c.wakeMntNs()
	return nil
}

// dispatch is one data source's fan-out. handle is called from one
// goroutine at a time (a data source's emitter), so buf is not shared.
type dispatch struct {
	run       *sharedRun
	clock     datasource.Clock
	container *datasource.Field
	buf       []byte
}

func (d *dispatch) handle(ds *datasource.DataSource, r *datasource.Record) error {
	d.run.records.Add(1)
	subs := d.run.subscribers()
	if len(subs) == 0 {
		return nil
	}
	var id []byte
	if d.container != nil {
		id = d.container.Str(r)
	}
	var (
		looked, encoded bool
		c               container
		known           bool
	)
	for _, s := range subs {
		// the container filter comes first: a record no subscriber may
		// see (another namespace's, the host's for a confined Trace) is
		// never encoded
		if s.filter != nil {
			if !looked {
				looked = true
				if len(id) > 0 {
					c, known = d.run.c.pods.lookup(string(id))
				}
			}
			if !known || !c.matches(s.filter) {
				continue
			}
		}
		if !encoded {
			encoded = true
			d.buf = ds.AppendJSON(d.buf[:0], r, d.clock)
		}
		s.write(d.buf)
	}
	return nil
}
