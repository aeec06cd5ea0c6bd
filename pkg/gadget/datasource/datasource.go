package datasource

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
)

// Type says how a data source produces records.
type Type string

const (
	// TypeTracer emits one record per event while the gadget runs.
	TypeTracer Type = "tracer"
	// TypeSnapshotter emits the entries of one snapshot, then ends.
	TypeSnapshotter Type = "snapshotter"
	// TypeInterval emits, every interval while the gadget runs, the entries
	// gathered since the last one (per-file counters, for example), and
	// what is left when it stops.
	TypeInterval Type = "interval"
)

// ErrDrop is returned by a Handler to drop a record: handlers after it do not
// see it and Emit returns nil.
var ErrDrop = errors.New("drop record")

// Handler sees every record of a data source it subscribed to. It must not
// keep r or slices of it after returning: the buffer is reused.
type Handler func(ds *DataSource, r *Record) error

type subscription struct {
	name     string
	priority int
	fn       Handler
}

// Record is one record's bytes. Reuse it: DataSource.NewRecord allocates,
// Reset and Load do not.
type Record struct {
	buf []byte
}

// Raw returns the record's whole buffer.
func (r *Record) Raw() []byte { return r.buf }

// Load copies an event of the data source's base layout into r and clears
// the fields stages added after it. Shorter input leaves the rest zero.
func (r *Record) Load(event []byte) {
	n := copy(r.buf, event)
	clear(r.buf[n:])
}

// DataSource is a named stream of records with a fixed layout.
//
// Fields and subscriptions are set up while the gadget is instantiated and
// pre-started, from one goroutine; after that the layout is read-only and
// Emit may be called from one goroutine at a time. The counters are safe for
// concurrent use.
type DataSource struct {
	name   string
	typ    Type
	fields []*Field
	byName map[string]*Field
	size   uint32
	subs   []subscription

	emitted atomic.Uint64
	dropped atomic.Uint64
	lost    atomic.Uint64
}

// New returns an empty data source.
func New(name string, typ Type) *DataSource {
	return &DataSource{name: name, typ: typ, byName: map[string]*Field{}}
}

// Name of the data source.
func (ds *DataSource) Name() string { return ds.name }

// Type of the data source.
func (ds *DataSource) Type() Type { return ds.typ }

// Size is the size of a record in bytes.
func (ds *DataSource) Size() uint32 { return ds.size }

// Fields returns the fields in layout order. The slice must not be modified.
func (ds *DataSource) Fields() []*Field { return ds.fields }

// Field returns the named field or nil.
func (ds *DataSource) Field(name string) *Field { return ds.byName[name] }

// AddFieldAt adds a field at a fixed offset, as the eBPF struct lays it out.
// The record grows to cover it.
func (ds *DataSource) AddFieldAt(f Field) (*Field, error) {
	if f.Name == "" {
		return nil, fmt.Errorf("data source %s: field without a name", ds.name)
	}
	if _, dup := ds.byName[f.Name]; dup {
		return nil, fmt.Errorf("data source %s: field %q declared twice", ds.name, f.Name)
	}
	if f.Kind == KindInvalid {
		return nil, fmt.Errorf("data source %s: field %q has no kind", ds.name, f.Name)
	}
	if want := f.Kind.fixedSize(); want != 0 && f.Size != want {
		return nil, fmt.Errorf("data source %s: field %q of kind %s must be %d bytes, is %d", ds.name, f.Name, f.Kind, want, f.Size)
	}
	if f.Size == 0 {
		return nil, fmt.Errorf("data source %s: field %q has size 0", ds.name, f.Name)
	}
	if (f.Kind == KindEnum || f.Kind == KindErrno || f.Kind == KindSyscall) && f.Size != 1 && f.Size != 2 && f.Size != 4 && f.Size != 8 {
		return nil, fmt.Errorf("data source %s: field %q of kind %s must be 1, 2, 4 or 8 bytes, is %d", ds.name, f.Name, f.Kind, f.Size)
	}
	if f.Kind.signed() {
		f.Signed = true
	}
	nf := f
	ds.fields = append(ds.fields, &nf)
	ds.byName[nf.Name] = &nf
	if end := f.Offset + f.Size; end > ds.size {
		ds.size = end
	}
	return &nf, nil
}

// PlaceAfter moves f, a field of ds, right after prev in the field
// order (what JSON and columns show first); the layout does not change.
func (ds *DataSource) PlaceAfter(f, prev *Field) {
	i, j := slices.Index(ds.fields, f), slices.Index(ds.fields, prev)
	if i < 0 || j < 0 || i == j+1 {
		return
	}
	ds.fields = slices.Delete(ds.fields, i, i+1)
	if i < j {
		j--
	}
	ds.fields = slices.Insert(ds.fields, j+1, f)
}

// AddField appends a field after every existing one, 8-byte aligned.
func (ds *DataSource) AddField(name string, kind Kind, size uint32) (*Field, error) {
	if s := kind.fixedSize(); s != 0 {
		size = s
	}
	off := (ds.size + 7) &^ 7
	return ds.AddFieldAt(Field{Name: name, Kind: kind, Offset: off, Size: size})
}

// Subscribe adds a handler. Handlers run in ascending priority, then in the
// order they subscribed.
func (ds *DataSource) Subscribe(name string, priority int, fn Handler) {
	ds.subs = append(ds.subs, subscription{name: name, priority: priority, fn: fn})
	sort.SliceStable(ds.subs, func(i, j int) bool { return ds.subs[i].priority < ds.subs[j].priority })
}

// NewRecord returns a zeroed record of the data source's size.
func (ds *DataSource) NewRecord() *Record {
	return &Record{buf: make([]byte, ds.size)}
}

// Emit runs r through the handlers. A handler returning ErrDrop ends the
// run with nil; any other error ends it and is returned, wrapped with the
// handler's name.
func (ds *DataSource) Emit(r *Record) error {
	for i := range ds.subs {
		if err := ds.subs[i].fn(ds, r); err != nil {
			if err == ErrDrop {
				ds.dropped.Add(1)
				return nil
			}
			return fmt.Errorf("data source %s: handler %s: %w", ds.name, ds.subs[i].name, err)
		}
	}
	ds.emitted.Add(1)
	return nil
}

// AddLost adds samples the producer could not deliver (a full ring buffer).
func (ds *DataSource) AddLost(n uint64) { ds.lost.Add(n) }

// Stats are a data source's counters.
type Stats struct {
	// Emitted records passed every handler.
	Emitted uint64 `json:"emitted"`
	// Dropped records were dropped by a handler (a filter or limiter).
	Dropped uint64 `json:"dropped"`
	// Lost samples never reached user space.
	Lost uint64 `json:"lost"`
}

// Stats returns the counters so far.
func (ds *DataSource) Stats() Stats {
	return Stats{Emitted: ds.emitted.Load(), Dropped: ds.dropped.Load(), Lost: ds.lost.Load()}
}
