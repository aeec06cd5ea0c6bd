package sink

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/gadgettest"
)

func procs(n int) *gadgettest.Source {
	return &gadgettest.Source{
		New: func() (*datasource.DataSource, error) {
			ds := datasource.New("processes", datasource.TypeSnapshotter)
			if _, err := ds.AddField("pid", datasource.KindUint32, 4); err != nil {
				return nil, err
			}
			_, err := ds.AddField("comm", datasource.KindString, 16)
			return ds, err
		},
		N: n,
		Fill: func(i int, ds *datasource.DataSource, r *datasource.Record) {
			binary.NativeEndian.PutUint32(r.Raw(), uint32(100+i))
			ds.Field("comm").SetString(r, "proc")
		},
	}
}

func TestWriterFormats(t *testing.T) {
	tests := []struct {
		w    Writer
		want string
	}{
		{Writer{}, "{\"pid\":100,\"comm\":\"proc\"}\n{\"pid\":101,\"comm\":\"proc\"}\n"},
		{Writer{PrefixSource: true}, "processes {\"pid\":100,\"comm\":\"proc\"}\nprocesses {\"pid\":101,\"comm\":\"proc\"}\n"},
		{Writer{Format: FormatColumns}, "PID     COMM\n100     proc\n101     proc\n"},
	}
	for _, tt := range tests {
		var out strings.Builder
		w := tt.w
		w.W = &out
		rt, _ := gadget.New(procs(2), &w)
		if _, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{}); err != nil {
			t.Fatal(err)
		}
		if out.String() != tt.want {
			t.Errorf("%+v: output\n%q\nwant\n%q", tt.w, out.String(), tt.want)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

func TestWriterErrorEndsRun(t *testing.T) {
	rt, _ := gadget.New(procs(3), &Writer{W: failingWriter{}})
	_, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "write output: no space left on device") {
		t.Fatalf("Run = %v", err)
	}
	if _, err := ParseFormat("yaml"); err == nil || !strings.Contains(err.Error(), "expected json or columns") {
		t.Errorf("ParseFormat: %v", err)
	}
}

func TestBufferIsBounded(t *testing.T) {
	line := len("{\"pid\":100,\"comm\":\"proc\"}\n")
	b := &Buffer{MaxBytes: 3*line + 1}
	rt, _ := gadget.New(procs(10), b)
	if _, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	out := b.Output()
	if strings.Count(out.Text, "\n") != 3 || !out.Truncated || out.Omitted != 7 {
		t.Errorf("output %+v: want 3 lines, truncated, 7 omitted", out)
	}
	b2 := &Buffer{}
	rt, _ = gadget.New(procs(2), b2)
	if _, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := b2.Output(); out.Truncated || strings.Count(out.Text, "\n") != 2 {
		t.Errorf("default buffer: %+v", out)
	}
}

type countingWriter struct {
	strings.Builder
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Builder.Write(p)
}

func TestWriterBuffersWithFlushInterval(t *testing.T) {
	for _, tt := range []struct {
		interval   time.Duration
		wantWrites int
	}{{0, 100}, {time.Hour, 1}} {
		var out countingWriter
		rt, _ := gadget.New(procs(100), &Writer{W: &out, FlushInterval: tt.interval})
		if _, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{}); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), "\n"); n != 100 {
			t.Errorf("interval %s: %d lines, want 100 (flushed at the end)", tt.interval, n)
		}
		if out.writes != tt.wantWrites {
			t.Errorf("interval %s: %d writes, want %d", tt.interval, out.writes, tt.wantWrites)
		}
	}
}
