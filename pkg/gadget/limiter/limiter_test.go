package limiter

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/gadgettest"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/sink"
)

func counter(n int, keepRunning bool) *gadgettest.Source {
	return &gadgettest.Source{
		New: func() (*datasource.DataSource, error) {
			ds := datasource.New("n", datasource.TypeTracer)
			_, err := ds.AddField("i", datasource.KindUint32, 4)
			return ds, err
		},
		N:           n,
		KeepRunning: keepRunning,
		Fill: func(i int, _ *datasource.DataSource, r *datasource.Record) {
			binary.NativeEndian.PutUint32(r.Raw(), uint32(i))
		},
	}
}

func TestMaxEvents(t *testing.T) {
	var out strings.Builder
	rt, _ := gadget.New(counter(1000, true), Stage{}, &sink.Writer{W: &out})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rt.Run(ctx, gadget.Gadget{}, gadget.RunOptions{Params: gadget.Params{ParamMaxEvents: "5"}})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the limit did not end the run")
	}
	if want := "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"i\":3}\n{\"i\":4}\n"; out.String() != want {
		t.Errorf("output %q, want the first 5 records", out.String())
	}
	if st := res.Stats["n"]; st.Emitted != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestMaxDuration(t *testing.T) {
	rt, _ := gadget.New(counter(0, true), Stage{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rt.Run(ctx, gadget.Gadget{}, gadget.RunOptions{Params: gadget.Params{ParamMaxDuration: "50ms"}}); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("max-duration did not end the run")
	}
}

func TestBadParams(t *testing.T) {
	tests := []struct {
		params gadget.Params
		want   string
	}{
		{gadget.Params{ParamMaxEvents: "-1"}, `param max-events: "-1" is not a count`},
		{gadget.Params{ParamMaxEvents: "lots"}, `param max-events: "lots" is not a count`},
		{gadget.Params{ParamMaxDuration: "soon"}, `param max-duration: "soon" is not a duration`},
		{gadget.Params{ParamMaxDuration: "-5s"}, `param max-duration: "-5s" is not a duration`},
	}
	for _, tt := range tests {
		rt, _ := gadget.New(counter(1, false), Stage{})
		if _, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{Params: tt.params}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.params, err, tt.want)
		}
	}
}
