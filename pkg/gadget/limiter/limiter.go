package limiter

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Name of the stage.
const Name = "limiter"

// Priority runs the limiter after filters (only kept records count) and
// before sinks.
const Priority = 90

// The limiter's params.
const (
	ParamMaxEvents   = "max-events"
	ParamMaxDuration = "max-duration"
)

// Stage is the limiter. The zero value is ready to use.
type Stage struct{}

var (
	_ gadget.Stage         = Stage{}
	_ gadget.ParamDeclarer = Stage{}
	_ gadget.Starter       = (*instance)(nil)
	_ gadget.Stopper       = (*instance)(nil)
)

// Name implements gadget.Stage.
func (Stage) Name() string { return Name }

// Priority implements gadget.Stage.
func (Stage) Priority() int { return Priority }

// Params implements gadget.ParamDeclarer.
func (Stage) Params() []gadget.ParamDesc {
	return []gadget.ParamDesc{
		{Key: ParamMaxEvents, Type: "uint64", Default: "0", Description: "end the run after this many records (all data sources together); 0 means no limit"},
		{Key: ParamMaxDuration, Type: "duration", Default: "0s", Description: "end the run after this long, e.g. 30s or 5m; 0 means no limit"},
	}
}

// Instantiate reads the limits; it opts out when there are none.
func (Stage) Instantiate(gctx *gadget.Context, params gadget.Params) (gadget.StageInstance, error) {
	in := &instance{}
	if v := params[ParamMaxEvents]; v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("param %s: %q is not a count (expected a whole number, 0 for no limit)", ParamMaxEvents, v)
		}
		in.max = n
	}
	if v := params[ParamMaxDuration]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("param %s: %q is not a duration (expected e.g. 30s or 5m, 0 for no limit)", ParamMaxDuration, v)
		}
		in.duration = d
	}
	if in.max == 0 && in.duration == 0 {
		return nil, nil
	}
	if in.max > 0 {
		for _, ds := range gctx.DataSources() {
			ds.Subscribe(Name, Priority, func(*datasource.DataSource, *datasource.Record) error {
				n := in.seen.Add(1)
				if n > in.max {
					return datasource.ErrDrop
				}
				if n == in.max {
					gctx.Cancel()
				}
				return nil
			})
		}
	}
	return in, nil
}

type instance struct {
	max      uint64
	duration time.Duration
	seen     atomic.Uint64

	mu    sync.Mutex
	timer *time.Timer // guarded by mu
}

func (*instance) Name() string { return Name }

// Start arms the duration timer.
func (in *instance) Start(gctx *gadget.Context) error {
	if in.duration > 0 {
		in.mu.Lock()
		in.timer = time.AfterFunc(in.duration, gctx.Cancel)
		in.mu.Unlock()
	}
	return nil
}

// Stop disarms it.
func (in *instance) Stop(*gadget.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.timer != nil {
		in.timer.Stop()
	}
	return nil
}
