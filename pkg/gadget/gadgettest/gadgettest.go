// Package gadgettest provides a data source stage that emits given
// records, for testing stages without loading eBPF.
package gadgettest

import (
	"errors"
	"sync"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Source registers the data source New returns and, once started, emits
// one record per fill call, then ends the run (Cancel) unless KeepRunning.
type Source struct {
	// New builds the data source; called once per run.
	New func() (*datasource.DataSource, error)
	// Fill writes the i-th record; n records are emitted.
	Fill func(i int, ds *datasource.DataSource, r *datasource.Record)
	N    int
	// KeepRunning leaves the run going after the last record.
	KeepRunning bool
}

var _ gadget.Stage = (*Source)(nil)

// Name implements gadget.Stage.
func (s *Source) Name() string { return "test-source" }

// Priority implements gadget.Stage.
func (s *Source) Priority() int { return 0 }

// Instantiate implements gadget.Stage.
func (s *Source) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	if s.New == nil || s.Fill == nil {
		return nil, errors.New("test source: New and Fill are required")
	}
	ds, err := s.New()
	if err != nil {
		return nil, err
	}
	if err := gctx.RegisterDataSource(ds); err != nil {
		return nil, err
	}
	return &instance{s: s, ds: ds}, nil
}

type instance struct {
	s  *Source
	ds *datasource.DataSource
	wg sync.WaitGroup
}

func (*instance) Name() string { return "test-source" }

// Start emits the records on a goroutine that Stop waits for.
func (in *instance) Start(gctx *gadget.Context) error {
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		r := in.ds.NewRecord()
		for i := 0; i < in.s.N && gctx.Context().Err() == nil; i++ {
			clear(r.Raw())
			in.s.Fill(i, in.ds, r)
			if err := in.ds.Emit(r); err != nil {
				gctx.Fail(err)
				return
			}
		}
		if !in.s.KeepRunning {
			gctx.Cancel()
		}
	}()
	return nil
}

// Stop waits for the emitting goroutine.
func (in *instance) Stop(*gadget.Context) error {
	in.wg.Wait()
	return nil
}

// Layout returns a Source.New that builds a data source with these fields
// at their offsets.
func Layout(name string, typ datasource.Type, fields ...datasource.Field) func() (*datasource.DataSource, error) {
	return func() (*datasource.DataSource, error) {
		ds := datasource.New(name, typ)
		for _, f := range fields {
			if _, err := ds.AddFieldAt(f); err != nil {
				return nil, err
			}
		}
		return ds, nil
	}
}
