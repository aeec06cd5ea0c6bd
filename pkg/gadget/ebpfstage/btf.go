package ebpfstage

import (
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// typedefKinds are the typedefs of bpf/include/gadget/types.h.
var typedefKinds = map[string]datasource.Kind{
	"gadget_timestamp": datasource.KindTimestamp,
	"gadget_mntns_id":  datasource.KindMntNsID,
	"gadget_uid":       datasource.KindUID,
	"gadget_gid":       datasource.KindGID,
	"gadget_errno":     datasource.KindErrno,
	"gadget_ipv4":      datasource.KindIPv4,
	"gadget_port":      datasource.KindPort,
	// Inspektor Gadget's (bpf/include/igabi/gadget.h, types.h)
	"gadget_syscall":      datasource.KindSyscall,
	"gadget_signal":       datasource.KindSignal,
	"gadget_kernel_stack": datasource.KindKernelStack,
}

// structFields adds one field per member of s to ds; a nested struct is
// one bytes field.
func structFields(ds *datasource.DataSource, s *btf.Struct) error {
	return memberFields(ds, s, "", 0, false)
}

// memberFields adds the members of s, at base in the record, as fields
// named prefix+member. With flatten, the members of a nested struct become
// fields "<member>.<submember>", as Inspektor Gadget names them.
func memberFields(ds *datasource.DataSource, s *btf.Struct, prefix string, base uint32, flatten bool) error {
	for _, m := range s.Members {
		if m.Name == "" {
			return fmt.Errorf("struct %s: anonymous members are not supported; name the member", s.Name)
		}
		if m.BitfieldSize != 0 {
			return fmt.Errorf("struct %s: member %s is a bitfield; use a whole integer", s.Name, m.Name)
		}
		off := base + m.Offset.Bytes()
		if inner, ok := btf.UnderlyingType(m.Type).(*btf.Struct); ok && flatten {
			f, typed, err := igStructKind(inner)
			if err != nil {
				return fmt.Errorf("struct %s: member %s: %w", s.Name, m.Name, err)
			}
			if typed {
				f.Name, f.Offset = prefix+m.Name, off+f.Offset
				nf, err := ds.AddFieldAt(f)
				if err != nil {
					return fmt.Errorf("struct %s: %w", s.Name, err)
				}
				nf.Signed = f.Signed
				continue
			}
			if err := memberFields(ds, inner, prefix+m.Name+".", off, true); err != nil {
				return err
			}
			continue
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			return fmt.Errorf("struct %s: member %s: %w", s.Name, m.Name, err)
		}
		f := datasource.Field{Name: prefix + m.Name, Offset: off, Size: uint32(size)}
		f.Kind, f.Signed, f.Enum = kindOf(m.Type)
		nf, err := ds.AddFieldAt(f)
		if err != nil {
			return fmt.Errorf("struct %s: %w", s.Name, err)
		}
		// AddFieldAt makes every errno signed (-errno); an unsigned one
		// holds the errno number itself
		if f.Kind == datasource.KindErrno {
			nf.Signed = f.Signed
		}
	}
	return nil
}

// kindOf maps a BTF type to a field kind. Types without a better kind
// (pointers, nested structs) are bytes.
func kindOf(t btf.Type) (datasource.Kind, bool, map[int64]string) {
	for {
		switch v := t.(type) {
		case *btf.Typedef:
			if k, ok := typedefKinds[v.Name]; ok {
				// gadgetpm's gadget_errno is a signed -errno, Inspektor
				// Gadget's an unsigned errno: the integer says which
				i, _ := btf.UnderlyingType(v.Type).(*btf.Int)
				return k, (k == datasource.KindErrno || k == datasource.KindKernelStack) && i != nil && i.Encoding == btf.Signed, nil
			}
			t = v.Type
		case *btf.Const:
			t = v.Type
		case *btf.Volatile:
			t = v.Type
		case *btf.Restrict:
			t = v.Type
		case *btf.Int:
			return intKind(v), v.Encoding == btf.Signed, nil
		case *btf.Enum:
			names := make(map[int64]string, len(v.Values))
			for _, ev := range v.Values {
				names[int64(ev.Value)] = ev.Name
			}
			return datasource.KindEnum, v.Signed, names
		case *btf.Array:
			if i, ok := btf.UnderlyingType(v.Type).(*btf.Int); ok && i.Size == 1 && i.Encoding != btf.Bool {
				return datasource.KindString, false, nil
			}
			return datasource.KindBytes, false, nil
		default:
			return datasource.KindBytes, false, nil
		}
	}
}

func intKind(i *btf.Int) datasource.Kind {
	if i.Encoding == btf.Bool {
		return datasource.KindBool
	}
	signed := i.Encoding == btf.Signed
	switch i.Size {
	case 1:
		if signed {
			return datasource.KindInt8
		}
		return datasource.KindUint8
	case 2:
		if signed {
			return datasource.KindInt16
		}
		return datasource.KindUint16
	case 4:
		if signed {
			return datasource.KindInt32
		}
		return datasource.KindUint32
	case 8:
		if signed {
			return datasource.KindInt64
		}
		return datasource.KindUint64
	}
	return datasource.KindBytes
}

// markerStruct returns the anonymous struct a marker macro declares, its
// "event" member's struct and the string held in its other member.
func markerStruct(v *btf.Var, value []byte, strMember string) (*btf.Struct, string, error) {
	t := v.Type
	for {
		switch q := t.(type) {
		case *btf.Const:
			t = q.Type
			continue
		case *btf.Volatile:
			t = q.Type
			continue
		}
		break
	}
	s, ok := t.(*btf.Struct)
	if !ok {
		return nil, "", fmt.Errorf("marker %s is a %s, not the struct the macro declares; use the macros of gadget/macros.h", v.Name, t)
	}
	var event *btf.Struct
	var str string
	for _, m := range s.Members {
		switch m.Name {
		case "event":
			a, ok := m.Type.(*btf.Array)
			if !ok {
				return nil, "", fmt.Errorf("marker %s: member event is not the array the macro declares; use the macros of gadget/macros.h", v.Name)
			}
			es, ok := btf.UnderlyingType(a.Type).(*btf.Struct)
			if !ok {
				return nil, "", fmt.Errorf("marker %s: the event type %s is not a struct", v.Name, a.Type)
			}
			event = es
		case strMember:
			var err error
			if str, err = memberString(v, m, value); err != nil {
				return nil, "", err
			}
		}
	}
	if event == nil || str == "" {
		return nil, "", fmt.Errorf("marker %s lacks its event type or %s name; use the macros of gadget/macros.h", v.Name, strMember)
	}
	if event.Size == 0 {
		return nil, "", fmt.Errorf("marker %s: struct %s is empty or only declared", v.Name, event.Name)
	}
	return event, str, nil
}

// memberString reads the NUL-terminated string member m of marker v's value.
func memberString(v *btf.Var, m btf.Member, value []byte) (string, error) {
	off := m.Offset.Bytes()
	size, err := btf.Sizeof(m.Type)
	if err != nil || int(off)+size > len(value) {
		return "", fmt.Errorf("marker %s: member %s lies outside its value", v.Name, m.Name)
	}
	b := value[off : int(off)+size]
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	return string(b), nil
}

// markerName returns the string member named member of a marker that
// holds only names (GADGET_FALLBACK).
func markerName(v *btf.Var, value []byte, member string) (string, error) {
	t := btf.UnderlyingType(v.Type)
	for {
		switch q := t.(type) {
		case *btf.Const:
			t = btf.UnderlyingType(q.Type)
			continue
		case *btf.Volatile:
			t = btf.UnderlyingType(q.Type)
			continue
		}
		break
	}
	s, ok := t.(*btf.Struct)
	if !ok {
		return "", fmt.Errorf("marker %s is a %s, not the struct the macro declares; use the macros of gadget/macros.h", v.Name, t)
	}
	for _, m := range s.Members {
		if m.Name == member {
			str, err := memberString(v, m, value)
			if err != nil {
				return "", err
			}
			if str == "" {
				break
			}
			return str, nil
		}
	}
	return "", fmt.Errorf("marker %s lacks its %s name; use the macros of gadget/macros.h", v.Name, member)
}
