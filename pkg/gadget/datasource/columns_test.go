package datasource

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestColumnCut(t *testing.T) {
	for _, tt := range []struct {
		mode Ellipsis
		in   string
		w    int
		want string
	}{
		{EllipsisUnset, "abcdefgh", 4, "abcdefgh"},
		{EllipsisNone, "abcdefgh", 4, "abcd"},
		{EllipsisEnd, "abcdefgh", 4, "abc…"},
		{EllipsisStart, "abcdefgh", 4, "…fgh"},
		{EllipsisMiddle, "abcdefgh", 5, "ab…gh"},
		{EllipsisEnd, "abcd", 4, "abcd"},
		{EllipsisEnd, "äöüßéèàç", 4, "äöü…"},
	} {
		if got := string(cut([]byte(tt.in), tt.w, tt.mode)); got != tt.want {
			t.Errorf("cut(%q, %d, %d) = %q, want %q", tt.in, tt.w, tt.mode, got, tt.want)
		}
	}
}

func TestColumnLayout(t *testing.T) {
	ds := New("t", TypeTracer)
	add := func(f Field) *Field {
		t.Helper()
		nf, err := ds.AddFieldAt(f)
		if err != nil {
			t.Fatal(err)
		}
		return nf
	}
	add(Field{Name: "ts_raw", Kind: KindUint64, Offset: 0, Size: 8, Raw: true})
	add(Field{Name: "pid", Kind: KindUint32, Offset: 8, Size: 4, Columns: Columns{Width: 6, Alignment: AlignRight}})
	add(Field{Name: "comm", Kind: KindString, Offset: 12, Size: 16, Columns: Columns{MaxWidth: 6, Ellipsis: EllipsisEnd}})
	add(Field{Name: "sig", Kind: KindSignal, Offset: 28, Size: 4, Columns: Columns{MinWidth: 12}})
	add(Field{Name: "nr", Kind: KindSyscall, Offset: 32, Size: 8})
	r := ds.NewRecord()
	binary.NativeEndian.PutUint32(r.buf[8:], 42)
	copy(r.buf[12:], "a-long-command")
	binary.NativeEndian.PutUint32(r.buf[28:], 9)
	binary.NativeEndian.PutUint64(r.buf[32:], 0xffff)
	l := ds.ColumnLayout()
	// ts_raw is Raw: not a column; a column is at least as wide as its name
	header, row := string(l.AppendHeader(nil)), string(l.AppendRow(nil, r, Clock{}))
	wantHeader := "   PID COMM   SIG          NR"
	wantRow := "    42 a-lon… SIGKILL      65535"
	if header != wantHeader || row != wantRow {
		t.Errorf("header %q\nrow    %q\nwant   %q\n       %q", header, row, wantHeader, wantRow)
	}
	if strings.Contains(string(ds.AppendJSON(nil, r, Clock{})), `"ts_raw":0`) == false {
		t.Errorf("JSON keeps a raw field: %s", ds.AppendJSON(nil, r, Clock{}))
	}
}

func TestEndpointSyscallSignalText(t *testing.T) {
	ds := New("t", TypeTracer)
	l4, err := ds.AddFieldAt(Field{Name: "dst", Kind: KindL4Endpoint, Offset: 0, Size: 24, Endpoint: EndpointLayout{Version: 20, Port: 16}})
	if err != nil {
		t.Fatal(err)
	}
	l3, err := ds.AddFieldAt(Field{Name: "addr", Kind: KindL3Endpoint, Offset: 24, Size: 20, Endpoint: EndpointLayout{Version: 16}})
	if err != nil {
		t.Fatal(err)
	}
	r := ds.NewRecord()
	set := func(version byte, addr []byte, port uint16) {
		clear(r.buf)
		copy(r.buf, addr)
		r.buf[20] = version
		binary.NativeEndian.PutUint16(r.buf[16:], port)
		copy(r.buf[24:], addr)
		r.buf[24+16] = version
	}
	v6 := make([]byte, 16)
	v6[0], v6[1], v6[15] = 0xfe, 0x80, 1
	for _, tt := range []struct {
		version byte
		addr    []byte
		want4   string
		want3   string
	}{
		{4, []byte{10, 0, 0, 1}, "10.0.0.1:8080", "10.0.0.1"},
		{6, v6, "[fe80::1]:8080", "fe80::1"},
		{0, []byte{1}, "unknown:01000000000000000000000000000000", "unknown:01000000000000000000000000000000"},
	} {
		set(tt.version, tt.addr, 8080)
		if got := string(l4.AppendText(nil, r, Clock{})); got != tt.want4 {
			t.Errorf("l4 v%d = %q, want %q", tt.version, got, tt.want4)
		}
		if got := string(l3.AppendText(nil, r, Clock{})); got != tt.want3 {
			t.Errorf("l3 v%d = %q, want %q", tt.version, got, tt.want3)
		}
	}
	if SyscallName(0) == "" || SignalName(15) != "SIGTERM" || SignalName(0) != "" {
		t.Errorf("SyscallName(0) = %q, SignalName(15) = %q, SignalName(0) = %q", SyscallName(0), SignalName(15), SignalName(0))
	}
}
