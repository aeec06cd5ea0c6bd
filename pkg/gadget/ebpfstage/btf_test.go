package ebpfstage

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

func TestStructFields(t *testing.T) {
	u8 := &btf.Int{Name: "__u8", Size: 1}
	typedef := func(name string, t btf.Type) btf.Type { return &btf.Typedef{Name: name, Type: t} }
	ints := map[string]*btf.Int{}
	for _, sz := range []uint32{1, 2, 4, 8} {
		ints["s"+string(rune('0'+sz))] = &btf.Int{Size: sz, Encoding: btf.Signed}
		ints["u"+string(rune('0'+sz))] = &btf.Int{Size: sz}
	}
	char := &btf.Int{Name: "char", Size: 1, Encoding: btf.Signed}
	state := &btf.Enum{Name: "state", Size: 4, Values: []btf.EnumValue{{Name: "OPEN", Value: 1}, {Name: "CLOSED", Value: 2}}}
	members := []struct {
		name string
		t    btf.Type
		size uint32
		kind datasource.Kind
	}{
		{"i8", ints["s1"], 1, datasource.KindInt8},
		{"u8", ints["u1"], 1, datasource.KindUint8},
		{"i16", ints["s2"], 2, datasource.KindInt16},
		{"u16", ints["u2"], 2, datasource.KindUint16},
		{"i32", &btf.Const{Type: ints["s4"]}, 4, datasource.KindInt32},
		{"u32", &btf.Volatile{Type: ints["u4"]}, 4, datasource.KindUint32},
		{"i64", ints["s8"], 8, datasource.KindInt64},
		{"u64", typedef("__u64", ints["u8"]), 8, datasource.KindUint64},
		{"flag", &btf.Int{Name: "_Bool", Size: 1, Encoding: btf.Bool}, 1, datasource.KindBool},
		{"comm", &btf.Array{Type: char, Nelems: 16, Index: ints["u4"]}, 16, datasource.KindString},
		{"raw", &btf.Array{Type: ints["u4"], Nelems: 2, Index: ints["u4"]}, 8, datasource.KindBytes},
		{"ptr", &btf.Pointer{Target: u8}, 8, datasource.KindBytes},
		{"state", state, 4, datasource.KindEnum},
		{"ts", typedef("gadget_timestamp", ints["u8"]), 8, datasource.KindTimestamp},
		{"ns", typedef("gadget_mntns_id", ints["u8"]), 8, datasource.KindMntNsID},
		{"uid", typedef("gadget_uid", ints["u4"]), 4, datasource.KindUID},
		{"gid", typedef("gadget_gid", ints["u4"]), 4, datasource.KindGID},
		{"ret", typedef("gadget_errno", ints["s8"]), 8, datasource.KindErrno},
		{"addr", typedef("gadget_ipv4", ints["u4"]), 4, datasource.KindIPv4},
		{"port", typedef("gadget_port", ints["u2"]), 2, datasource.KindPort},
	}
	s := &btf.Struct{Name: "event"}
	var off uint32
	for _, m := range members {
		s.Members = append(s.Members, btf.Member{Name: m.name, Type: m.t, Offset: btf.Bits(off * 8)})
		off += m.size
	}
	s.Size = off
	ds := datasource.New("ev", datasource.TypeTracer)
	if err := structFields(ds, s); err != nil {
		t.Fatal(err)
	}
	off = 0
	for _, m := range members {
		f := ds.Field(m.name)
		if f == nil || f.Kind != m.kind || f.Offset != off || f.Size != m.size {
			t.Errorf("member %s: field %+v, want kind %s at %d size %d", m.name, f, m.kind, off, m.size)
		}
		off += m.size
	}
	if e := ds.Field("state"); e.Enum[2] != "CLOSED" {
		t.Errorf("enum names %v", e.Enum)
	}
	if !ds.Field("ret").Signed || !ds.Field("i8").Signed || ds.Field("u8").Signed {
		t.Error("signedness wrong")
	}

	bad := []struct {
		s    *btf.Struct
		want string
	}{
		{&btf.Struct{Name: "bits", Size: 4, Members: []btf.Member{{Name: "b", Type: ints["u4"], BitfieldSize: 3}}}, "struct bits: member b is a bitfield"},
		{&btf.Struct{Name: "anon", Size: 4, Members: []btf.Member{{Type: ints["u4"]}}}, "struct anon: anonymous members are not supported"},
		{&btf.Struct{Name: "odd", Size: 3, Members: []btf.Member{{Name: "e", Type: &btf.Enum{Name: "e3", Size: 3}}}}, `field "e" of kind enum must be 1, 2, 4 or 8 bytes`},
	}
	for _, tt := range bad {
		if err := structFields(datasource.New("x", datasource.TypeTracer), tt.s); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.s.Name, err, tt.want)
		}
	}
}
