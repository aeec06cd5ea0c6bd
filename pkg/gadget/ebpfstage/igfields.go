package ebpfstage

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Field types of Inspektor Gadget's ABI that are structs, recognised by
// their names (bpf/include/igabi/types.h), and the maps its stack types
// index.
const (
	igL3Endpoint   = "gadget_l3endpoint_t"
	igL4Endpoint   = "gadget_l4endpoint_t"
	igUserStack    = "gadget_user_stack"
	igKernelStackM = "ig_kstack"
	igUserStackM   = "ig_ustack"
	// rawSuffix marks a field shown formatted under its name without it.
	rawSuffix = "_raw"
)

// Sizes of the string fields the runtime adds.
const (
	nameFieldSize  = 33   // a user or group name (32 bytes on most systems)
	stackFieldSize = 1024 // a stack's symbols, cut at the last whole frame
)

// derivedKind says what a derived field holds.
type derivedKind uint8

const (
	derivedUser derivedKind = iota
	derivedGroup
	derivedKernelStack
	derivedUserStack
)

// derived is a string field the runtime fills from another field of the
// same record: a user or group name, a stack's symbols.
type derived struct {
	kind     derivedKind
	src, dst *datasource.Field
	// pidOff is where a user stack's pid is in the record (-1: not known,
	// the frames stay addresses)
	pidOff int
}

// igStructKind returns the field kind of a struct member that Inspektor
// Gadget's ABI types as a whole (endpoints, user stacks), with the field's
// offset and size inside the member; ok is false for other structs, which
// are flattened.
func igStructKind(s *btf.Struct) (f datasource.Field, ok bool, err error) {
	switch s.Name {
	case igL3Endpoint, igL4Endpoint:
		l, err := endpointLayout(s)
		if err != nil {
			return f, true, err
		}
		f.Kind, f.Size, f.Endpoint = datasource.KindL3Endpoint, s.Size, l
		if s.Name == igL4Endpoint {
			f.Kind = datasource.KindL4Endpoint
		}
		return f, true, nil
	case igUserStack:
		m, off, found := memberByName(s, "stack_id", 0)
		if !found {
			return f, true, fmt.Errorf("struct %s has no member stack_id", s.Name)
		}
		if sz, _ := btf.Sizeof(m.Type); sz != 4 {
			return f, true, fmt.Errorf("struct %s: member stack_id must be 4 bytes, is %d", s.Name, sz)
		}
		f.Kind, f.Offset, f.Size, f.Signed = datasource.KindUserStack, off, 4, true
		return f, true, nil
	}
	return f, false, nil
}

// endpointLayout finds the address, version and port of an endpoint
// struct by member name: Inspektor Gadget's header has laid them out in
// more than one way (addr or addr_raw, nested in l3 or not).
func endpointLayout(s *btf.Struct) (datasource.EndpointLayout, error) {
	var l datasource.EndpointLayout
	addr, addrOff, ok := memberByName(s, "addr_raw", 0)
	if !ok {
		addr, addrOff, ok = memberByName(s, "addr", 0)
	}
	if !ok || addrOff != 0 {
		return l, fmt.Errorf("struct %s: expected its first member to be the address (addr_raw or addr, 16 bytes)", s.Name)
	}
	if sz, _ := btf.Sizeof(addr.Type); sz != 16 {
		return l, fmt.Errorf("struct %s: the address must be 16 bytes, is %d", s.Name, sz)
	}
	v, off, ok := memberByName(s, "version", 0)
	if sz, _ := btf.Sizeof(v.Type); !ok || sz != 1 {
		return l, fmt.Errorf("struct %s: expected a member version of 1 byte (4 or 6)", s.Name)
	}
	l.Version = off
	if s.Name == igL4Endpoint {
		p, off, ok := memberByName(s, "port", 0)
		if sz, _ := btf.Sizeof(p.Type); !ok || sz != 2 {
			return l, fmt.Errorf("struct %s: expected a member port of 2 bytes", s.Name)
		}
		l.Port = off
	}
	return l, nil
}

// memberByName finds a member of s or of a struct nested in it (as the
// older endpoint layout nests l3), with its offset from s's start.
func memberByName(s *btf.Struct, name string, base uint32) (btf.Member, uint32, bool) {
	for _, m := range s.Members {
		if m.Name == name {
			return m, base + m.Offset.Bytes(), true
		}
	}
	for _, m := range s.Members {
		if inner, ok := btf.UnderlyingType(m.Type).(*btf.Struct); ok {
			if found, off, ok := memberByName(inner, name, base+m.Offset.Bytes()); ok {
				return found, off, true
			}
		}
	}
	return btf.Member{}, 0, false
}

// igConventions applies Inspektor Gadget's field conventions to a tracer's
// data source: a field `<name>_raw` is shown formatted as `<name>` (the raw
// one stays in JSON and catalogs, out of `-o columns`); user and group ids
// get their names, stack ids their frames, in string fields beside them.
// The maps a stack needs must be in the object.
func igConventions(coll *ebpf.CollectionSpec, ds *datasource.DataSource) ([]derived, error) {
	var out []derived
	fields := append([]*datasource.Field(nil), ds.Fields()...)
	for _, f := range fields {
		base, raw := strings.CutSuffix(f.Name, rawSuffix)
		switch f.Kind {
		case datasource.KindUID, datasource.KindGID:
			kind, name := derivedUser, "user"
			if f.Kind == datasource.KindGID {
				kind, name = derivedGroup, "group"
			}
			dst, err := addDerived(ds, idNameField(base, name), datasource.KindString, nameFieldSize)
			if err != nil {
				return nil, err
			}
			ds.PlaceAfter(dst, f)
			out = append(out, derived{kind: kind, src: f, dst: dst})
			if raw {
				f.Raw = true
			}
		case datasource.KindKernelStack, datasource.KindUserStack:
			kind, mapName := derivedKernelStack, igKernelStackM
			macro := "GADGET_KERNEL_STACK_MAP"
			if f.Kind == datasource.KindUserStack {
				kind, mapName, macro = derivedUserStack, igUserStackM, "GADGET_USER_STACK_MAP"
			}
			m, ok := coll.Maps[mapName]
			if !ok || m.Type != ebpf.StackTrace {
				return nil, fmt.Errorf("field %s (%s) needs the stack trace map %s; declare it with %s", f.Name, f.Kind, mapName, macro)
			}
			name := base
			if !raw {
				name = f.Name + "_syms"
			}
			dst, err := addDerived(ds, name, datasource.KindString, stackFieldSize)
			if err != nil {
				return nil, err
			}
			dst.Columns = datasource.Columns{Width: 40, Ellipsis: datasource.EllipsisEnd}
			ds.PlaceAfter(dst, f)
			f.Raw = true
			out = append(out, derived{kind: kind, src: f, dst: dst, pidOff: userStackPidOffset(coll, f)})
		default:
			if !raw || base == "" || ds.Field(base) != nil {
				continue
			}
			twin := *f
			twin.Name, twin.Hidden, twin.Annotations = base, false, nil
			nf, err := ds.AddFieldAt(twin)
			if err != nil {
				return nil, err
			}
			// AddFieldAt makes every errno signed; keep the original's sign
			nf.Signed = f.Signed
			ds.PlaceAfter(nf, f)
			f.Raw = true
		}
	}
	return out, nil
}

// userStackPidOffset returns where the pid of user stack field f is in
// the record: the member pid (or pid_level0, as Inspektor Gadget's header
// names it) of struct gadget_user_stack; -1 without one.
func userStackPidOffset(coll *ebpf.CollectionSpec, f *datasource.Field) int {
	var s *btf.Struct
	if f.Kind != datasource.KindUserStack || coll.Types == nil || coll.Types.TypeByName(igUserStack, &s) != nil {
		return -1
	}
	_, idOff, _ := memberByName(s, "stack_id", 0)
	for _, name := range []string{"pid", "pid_level0"} {
		if m, off, ok := memberByName(s, name, 0); ok {
			if sz, _ := btf.Sizeof(m.Type); sz == 4 {
				return int(f.Offset) - int(idOff) + int(off)
			}
		}
	}
	return -1
}

// idNameField names the field of a uid's user name: `uid` → `user`,
// `creds.uid` → `creds.user`, any other name → `<name>_user`.
func idNameField(base, name string) string {
	prefix, last := "", base
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		prefix, last = base[:i+1], base[i+1:]
	}
	if last == "uid" || last == "gid" {
		return prefix + name
	}
	return base + "_" + name
}

func addDerived(ds *datasource.DataSource, name string, kind datasource.Kind, size uint32) (*datasource.Field, error) {
	if ds.Field(name) != nil {
		return nil, fmt.Errorf("the runtime adds field %s, which the struct already has; rename the member", name)
	}
	f, err := ds.AddField(name, kind, size)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// subscribeDerived fills the derived fields of every tracer that has
// some, before any other stage sees the record.
func (i *instance) subscribeDerived(gctx *gadget.Context) {
	i.fields = &stackFormatter{ids: i.op.ids, kallsymsPath: "/proc/kallsyms", log: gctx.Logger(), users: newUserSymbols("/proc")}
	subscribe := func(ds *datasource.DataSource, d []derived) {
		if len(d) == 0 {
			return
		}
		var buf []byte // one goroutine per data source emits its records
		ds.Subscribe(Name+"-fields", Priority, func(_ *datasource.DataSource, r *datasource.Record) error {
			buf = i.fields.fill(d, r, buf)
			return nil
		})
	}
	for _, t := range i.spec.tracers {
		subscribe(t.ds, t.derived)
	}
	for _, s := range i.spec.snapshotters {
		subscribe(s.ds, s.derived)
	}
}
