package sink

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Priority of every sink: after filters and limiters.
const Priority = 100

// Format of a writer sink.
type Format string

const (
	// FormatJSON writes one JSON object per line.
	FormatJSON Format = "json"
	// FormatColumns writes a header line and aligned columns.
	FormatColumns Format = "columns"
)

// ParseFormat accepts "json" and "columns".
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatJSON, FormatColumns:
		return Format(s), nil
	}
	return "", fmt.Errorf("output format %q: expected json or columns", s)
}

// Writer writes every record to W. Writes are serialised: data sources
// read on different goroutines never interleave lines. A write error ends
// the run with that error.
type Writer struct {
	// W receives the output. Required.
	W io.Writer
	// Format of the output; default FormatJSON.
	Format Format
	// PrefixSource prefixes every line with the data source's name (for
	// gadgets with several data sources). Default false.
	PrefixSource bool
	// FlushInterval, when positive, buffers the output and writes it out
	// at least this often and when the run ends: one write per batch
	// instead of one per record. Default 0: every record is written at
	// once.
	FlushInterval time.Duration
}

var (
	_ gadget.Stage       = (*Writer)(nil)
	_ gadget.Starter     = (*writerInstance)(nil)
	_ gadget.Stopper     = (*writerInstance)(nil)
	_ gadget.PostStopper = (*writerInstance)(nil)
)

// Name implements gadget.Stage.
func (w *Writer) Name() string { return "sink-" + string(w.format()) }

// Priority implements gadget.Stage.
func (w *Writer) Priority() int { return Priority }

func (w *Writer) format() Format {
	if w.Format == "" {
		return FormatJSON
	}
	return w.Format
}

// Instantiate subscribes to every data source.
func (w *Writer) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	if w.W == nil {
		return nil, fmt.Errorf("sink %s: no writer", w.Name())
	}
	in := &writerInstance{w: w, out: w.W}
	if w.FlushInterval > 0 {
		in.bw = bufio.NewWriterSize(w.W, 64<<10)
		in.out = in.bw
	}
	clock, _ := gctx.Var(gadget.VarClock)
	c, _ := clock.(datasource.Clock)
	for _, ds := range gctx.DataSources() {
		var layout *datasource.ColumnLayout
		if w.format() == FormatColumns {
			layout = ds.ColumnLayout()
		}
		ds.Subscribe(w.Name(), Priority, func(ds *datasource.DataSource, r *datasource.Record) error {
			in.mu.Lock()
			defer in.mu.Unlock()
			in.buf = in.buf[:0]
			if w.PrefixSource {
				in.buf = append(in.buf, ds.Name()...)
				in.buf = append(in.buf, ' ')
			}
			if w.format() == FormatJSON {
				in.buf = ds.AppendJSON(in.buf, r, c)
			} else {
				if !in.headerDone[ds] {
					in.writeHeader(ds, layout)
					if w.PrefixSource {
						// the row after the header gets its prefix too
						in.buf = append(append(in.buf, ds.Name()...), ' ')
					}
				}
				in.buf = layout.AppendRow(in.buf, r, c)
			}
			in.buf = append(in.buf, '\n')
			if _, err := in.out.Write(in.buf); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return nil
		})
	}
	return in, nil
}

type writerInstance struct {
	w *Writer

	mu         sync.Mutex
	out        io.Writer                       // guarded by mu: w.W or bw
	bw         *bufio.Writer                   // guarded by mu; nil without FlushInterval
	buf        []byte                          // guarded by mu; reused per record
	headerDone map[*datasource.DataSource]bool // guarded by mu

	stop chan struct{}
	done chan struct{}
}

func (*writerInstance) Name() string { return "sink" }

// Start runs the flusher when the output is buffered.
func (in *writerInstance) Start(gctx *gadget.Context) error {
	if in.bw == nil {
		return nil
	}
	in.stop, in.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(in.done)
		t := time.NewTicker(in.w.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-in.stop:
				return
			case <-t.C:
				if err := in.flush(); err != nil {
					gctx.Fail(err)
					return
				}
			}
		}
	}()
	return nil
}

// Stop ends the flusher; records still arriving (the eBPF stage drains
// its ring buffers after this) are flushed by PostStop.
func (in *writerInstance) Stop(*gadget.Context) error {
	if in.stop != nil {
		close(in.stop)
		<-in.done
		in.stop = nil
	}
	return nil
}

// PostStop writes out what is buffered: every producer has stopped.
func (in *writerInstance) PostStop(*gadget.Context) error {
	return in.flush()
}

func (in *writerInstance) flush() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.bw == nil {
		return nil
	}
	if err := in.bw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func (in *writerInstance) writeHeader(ds *datasource.DataSource, layout *datasource.ColumnLayout) {
	if in.headerDone == nil {
		in.headerDone = map[*datasource.DataSource]bool{}
	}
	in.headerDone[ds] = true
	in.buf = append(layout.AppendHeader(in.buf), '\n')
}

// Buffer keeps JSON lines in memory up to MaxBytes, for a Trace's
// status.output. Records that do not fit are counted and set Truncated. Its
// methods are safe for concurrent use; use one Buffer per run.
type Buffer struct {
	// MaxBytes bounds the output; default 64 KiB.
	MaxBytes int

	mu        sync.Mutex
	out       bytes.Buffer // guarded by mu
	truncated bool         // guarded by mu
	omitted   uint64       // guarded by mu
	line      []byte       // guarded by mu
}

var _ gadget.Stage = (*Buffer)(nil)

// Name implements gadget.Stage.
func (b *Buffer) Name() string { return "sink-buffer" }

// Priority implements gadget.Stage.
func (b *Buffer) Priority() int { return Priority }

// Instantiate subscribes to every data source.
func (b *Buffer) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	max := b.MaxBytes
	if max <= 0 {
		max = 64 << 10
	}
	clock, _ := gctx.Var(gadget.VarClock)
	c, _ := clock.(datasource.Clock)
	for _, ds := range gctx.DataSources() {
		ds.Subscribe(b.Name(), Priority, func(ds *datasource.DataSource, r *datasource.Record) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.line = append(ds.AppendJSON(b.line[:0], r, c), '\n')
			if b.out.Len()+len(b.line) > max {
				b.truncated = true
				b.omitted++
				return nil
			}
			b.out.Write(b.line)
			return nil
		})
	}
	return bufferInstance{}, nil
}

type bufferInstance struct{}

func (bufferInstance) Name() string { return "sink-buffer" }

// Output is what a Buffer holds.
type Output struct {
	// Text is JSON lines.
	Text string
	// Truncated is true when records did not fit.
	Truncated bool
	// Omitted counts the records that did not fit.
	Omitted uint64
}

// Output returns a copy of the buffered output.
func (b *Buffer) Output() Output {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Output{Text: b.out.String(), Truncated: b.truncated, Omitted: b.omitted}
}
