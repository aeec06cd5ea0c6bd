package datasource

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// execLayout mirrors trace_exec's struct event.
type execEvent struct {
	Timestamp uint64
	MntNS     uint64
	Pid       uint32
	Ppid      uint32
	UID       uint32
	GID       uint32
	Comm      [16]byte
	Args      [256]byte
	ArgsSize  uint32
	_         uint32
}

func newExecSource(t testing.TB) *DataSource {
	t.Helper()
	ds := New("exec", TypeTracer)
	for _, f := range []Field{
		{Name: "timestamp", Kind: KindTimestamp, Offset: 0, Size: 8},
		{Name: "mntns_id", Kind: KindMntNsID, Offset: 8, Size: 8},
		{Name: "pid", Kind: KindUint32, Offset: 16, Size: 4},
		{Name: "ppid", Kind: KindUint32, Offset: 20, Size: 4},
		{Name: "uid", Kind: KindUID, Offset: 24, Size: 4},
		{Name: "gid", Kind: KindGID, Offset: 28, Size: 4},
		{Name: "comm", Kind: KindString, Offset: 32, Size: 16},
		{Name: "args", Kind: KindStringList, Offset: 48, Size: 256},
		{Name: "args_size", Kind: KindUint32, Offset: 304, Size: 4, Hidden: true},
	} {
		if _, err := ds.AddFieldAt(f); err != nil {
			t.Fatal(err)
		}
	}
	return ds
}

func execBytes(t testing.TB) []byte {
	e := execEvent{Timestamp: 1_500_000_000, MntNS: 4026531840, Pid: 42, Ppid: 1, UID: 1000, GID: 100, ArgsSize: 12}
	copy(e.Comm[:], "bash")
	copy(e.Args[:], "ls\x00-l\x00/tmp\x00")
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, e); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestAppendJSON(t *testing.T) {
	ds := newExecSource(t)
	r := ds.NewRecord()
	r.Load(execBytes(t))
	got := string(ds.AppendJSON(nil, r, Clock{}))
	want := `{"timestamp":"1500000000","mntns_id":4026531840,"pid":42,"ppid":1,"uid":1000,"gid":100,"comm":"bash","args":"ls -l /tmp"}`
	if got != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	boot := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got = string(ds.Field("timestamp").AppendText(nil, r, Clock{BootTime: boot}))
	if want := "2026-01-02T03:04:06.5Z"; got != want {
		t.Errorf("timestamp %s, want %s", got, want)
	}
}

func TestFieldKinds(t *testing.T) {
	ds := New("k", TypeTracer)
	add := func(f Field) *Field {
		t.Helper()
		nf, err := ds.AddFieldAt(f)
		if err != nil {
			t.Fatal(err)
		}
		return nf
	}
	i8 := add(Field{Name: "i8", Kind: KindInt8, Offset: 0, Size: 1})
	u8 := add(Field{Name: "u8", Kind: KindUint8, Offset: 1, Size: 1})
	i16 := add(Field{Name: "i16", Kind: KindInt16, Offset: 2, Size: 2})
	u16 := add(Field{Name: "u16", Kind: KindUint16, Offset: 4, Size: 2})
	b := add(Field{Name: "b", Kind: KindBool, Offset: 6, Size: 1})
	i32 := add(Field{Name: "i32", Kind: KindInt32, Offset: 8, Size: 4})
	u32 := add(Field{Name: "u32", Kind: KindUint32, Offset: 12, Size: 4})
	i64 := add(Field{Name: "i64", Kind: KindInt64, Offset: 16, Size: 8})
	u64 := add(Field{Name: "u64", Kind: KindUint64, Offset: 24, Size: 8})
	errno := add(Field{Name: "ret", Kind: KindErrno, Offset: 32, Size: 8})
	en := add(Field{Name: "state", Kind: KindEnum, Offset: 40, Size: 4, Enum: map[int64]string{1: "ESTABLISHED"}})
	ip := add(Field{Name: "daddr", Kind: KindIPv4, Offset: 44, Size: 4})
	port := add(Field{Name: "dport", Kind: KindPort, Offset: 48, Size: 2})
	raw := add(Field{Name: "raw", Kind: KindBytes, Offset: 50, Size: 3})
	str := add(Field{Name: "s", Kind: KindString, Offset: 53, Size: 8})

	r := ds.NewRecord()
	i8.SetUint(r, uint64(0xff)) // -1
	u8.SetUint(r, 255)
	i16.SetUint(r, 0x8000) // -32768
	u16.SetUint(r, 65535)
	b.SetUint(r, 1)
	i32.SetUint(r, 0xffffff85) // -123
	u32.SetUint(r, 4294967295)
	i64.SetUint(r, 1<<63) // min int64
	u64.SetUint(r, 1<<64-1)
	minusTwo := int64(-2)
	errno.SetUint(r, uint64(minusTwo)) // -ENOENT
	en.SetUint(r, 1)
	copy(ip.Bytes(r), []byte{10, 0, 0, 7})
	port.SetUint(r, 8080)
	copy(raw.Bytes(r), []byte{0xde, 0xad, 0x01})
	copy(str.Bytes(r), "a\"b\\\n\x01garbage") // no NUL: the whole field
	tests := []struct {
		f        *Field
		text     string
		jsonPart string
	}{
		{i8, "-1", `"i8":-1`},
		{u8, "255", `"u8":255`},
		{i16, "-32768", `"i16":-32768`},
		{u16, "65535", `"u16":65535`},
		{b, "true", `"b":true`},
		{i32, "-123", `"i32":-123`},
		{u32, "4294967295", `"u32":4294967295`},
		{i64, "-9223372036854775808", `"i64":-9223372036854775808`},
		{u64, "18446744073709551615", `"u64":18446744073709551615`},
		{errno, "ENOENT", `"ret":-2`},
		{en, "ESTABLISHED", `"state":"ESTABLISHED"`},
		{ip, "10.0.0.7", `"daddr":"10.0.0.7"`},
		{port, "8080", `"dport":8080`},
		{raw, "dead01", `"raw":"dead01"`},
		{str, "a\"b\\\n\x01ga", `"s":"a\"b\\\n\u0001ga"`},
	}
	js := string(ds.AppendJSON(nil, r, Clock{}))
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("invalid JSON %s: %v", js, err)
	}
	for _, tt := range tests {
		if got := string(tt.f.AppendText(nil, r, Clock{})); got != tt.text {
			t.Errorf("%s text = %q, want %q", tt.f.Name, got, tt.text)
		}
		if !strings.Contains(js, tt.jsonPart) {
			t.Errorf("JSON %s lacks %s", js, tt.jsonPart)
		}
	}
	en.SetUint(r, 9)
	if got := string(en.AppendText(nil, r, Clock{})); got != "9" {
		t.Errorf("unnamed enum value = %q", got)
	}
}

func TestAddFieldErrors(t *testing.T) {
	tests := []struct {
		f    Field
		want string
	}{
		{Field{Kind: KindUint32, Size: 4}, "field without a name"},
		{Field{Name: "x", Size: 4}, `field "x" has no kind`},
		{Field{Name: "x", Kind: KindUint32, Size: 8}, `field "x" of kind uint32 must be 4 bytes, is 8`},
		{Field{Name: "x", Kind: KindString}, `field "x" has size 0`},
		{Field{Name: "x", Kind: KindEnum, Size: 3}, `field "x" of kind enum must be 1, 2, 4 or 8 bytes, is 3`},
		{Field{Name: "dup", Kind: KindUint8, Size: 1}, `field "dup" declared twice`},
	}
	for _, tt := range tests {
		ds := New("src", TypeTracer)
		if _, err := ds.AddField("dup", KindUint8, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := ds.AddFieldAt(tt.f); err == nil || !strings.Contains(err.Error(), "data source src: "+tt.want) {
			t.Errorf("AddFieldAt(%+v) = %v, want %q", tt.f, err, tt.want)
		}
	}
	if _, err := ParseKind("float"); err == nil || !strings.Contains(err.Error(), `unknown field kind "float"`) {
		t.Errorf("ParseKind: %v", err)
	}
}

func TestEmitOrderDropAndErrors(t *testing.T) {
	ds := newExecSource(t)
	var order []string
	h := func(name string, ret error) Handler {
		return func(*DataSource, *Record) error { order = append(order, name); return ret }
	}
	ds.Subscribe("sink", 100, h("sink", nil))
	ds.Subscribe("filter", 20, h("filter", nil))
	ds.Subscribe("enrich", 10, h("enrich", nil))
	r := ds.NewRecord()
	if err := ds.Emit(r); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "enrich filter sink" {
		t.Errorf("order %q", got)
	}

	order = nil
	ds.Subscribe("drop", 50, h("drop", ErrDrop))
	if err := ds.Emit(r); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "enrich filter drop" {
		t.Errorf("after drop: %q", got)
	}
	boom := errors.New("disk full")
	ds2 := newExecSource(t)
	ds2.Subscribe("sink", 1, h("sink", boom))
	if err := ds2.Emit(r); !errors.Is(err, boom) || !strings.Contains(err.Error(), "data source exec: handler sink") {
		t.Errorf("Emit = %v", err)
	}
	ds.AddLost(3)
	if st := ds.Stats(); st != (Stats{Emitted: 1, Dropped: 1, Lost: 3}) {
		t.Errorf("stats %+v", st)
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	ds := newExecSource(t)
	var out []byte
	ds.Subscribe("sink", 100, func(ds *DataSource, r *Record) error {
		out = ds.AppendJSON(out[:0], r, Clock{BootTime: time.Unix(1e9, 0)})
		return nil
	})
	r := ds.NewRecord()
	ev := execBytes(t)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Load(ev)
		if err := ds.Emit(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per event, want 0", allocs)
	}
}

// BenchmarkDecode is the runtime's decode path: copy a raw event into a
// reused record, run it through a handler and encode it as JSON.
func BenchmarkDecode(b *testing.B) {
	ds := newExecSource(b)
	var out []byte
	clock := Clock{BootTime: time.Unix(1e9, 0)}
	ds.Subscribe("sink", 100, func(ds *DataSource, r *Record) error {
		out = append(ds.AppendJSON(out[:0], r, clock), '\n')
		return nil
	})
	r := ds.NewRecord()
	ev := execBytes(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Load(ev)
		if err := ds.Emit(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeReference is what a straightforward decoder does with the
// same event: binary.Read into a struct, then encoding/json.
func BenchmarkDecodeReference(b *testing.B) {
	ev := execBytes(b)
	type out struct {
		Timestamp time.Time `json:"timestamp"`
		MntNS     uint64    `json:"mntns_id"`
		Pid       uint32    `json:"pid"`
		Ppid      uint32    `json:"ppid"`
		UID       uint32    `json:"uid"`
		GID       uint32    `json:"gid"`
		Comm      string    `json:"comm"`
		Args      string    `json:"args"`
	}
	boot := time.Unix(1e9, 0)
	b.ReportAllocs()
	for b.Loop() {
		var e execEvent
		if err := binary.Read(bytes.NewReader(ev), binary.NativeEndian, &e); err != nil {
			b.Fatal(err)
		}
		o := out{Timestamp: boot.Add(time.Duration(e.Timestamp)), MntNS: e.MntNS, Pid: e.Pid, Ppid: e.Ppid, UID: e.UID, GID: e.GID,
			Comm: string(bytes.TrimRight(e.Comm[:], "\x00")), Args: strings.ReplaceAll(string(bytes.TrimRight(e.Args[:], "\x00")), "\x00", " ")}
		if _, err := json.Marshal(o); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUnsignedErrno: Inspektor Gadget's gadget_errno holds the errno
// number itself; a KindErrno field whose Signed is cleared prints it by
// name too.
func TestUnsignedErrno(t *testing.T) {
	ds := New("t", TypeTracer)
	f, err := ds.AddFieldAt(Field{Name: "error_raw", Kind: KindErrno, Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	f.Signed = false
	r := ds.NewRecord()
	for _, tt := range []struct {
		v    uint64
		text string
	}{{2, "ENOENT"}, {13, "EACCES"}, {0, "0"}} {
		f.SetUint(r, tt.v)
		if got := string(f.AppendText(nil, r, Clock{})); got != tt.text {
			t.Errorf("errno %d: text %q, want %q", tt.v, got, tt.text)
		}
	}
}
