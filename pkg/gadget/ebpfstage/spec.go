package ebpfstage

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Marker variable prefixes written by bpf/include/gadget/macros.h.
const (
	tracerPrefix      = "gadget_tracer_"
	snapshotterPrefix = "gadget_snapshotter_"
	paramPrefix       = "gadget_param_"
	intervalPrefix    = "gadget_interval_"
	fallbackPrefix    = "gadget_fallback_"
	lostSuffix        = "_lost"
	// Inspektor Gadget's markers (bpf/include/igabi/gadget.h) name what
	// they declare in the symbol: gadget_tracer_<name>___<map>___<struct>.
	igSeparator      = "___"
	igMapIterPrefix  = "gadget_mapiter_"
	igOptionalPrefix = "gadget_program_optional_"
)

type tracer struct {
	ds      *datasource.DataSource
	mapName string
	// ig: declared with Inspektor Gadget's ABI, whose buffer helpers fall
	// back to a perf event array (perf.go)
	ig bool
	// perf: the map is read as a perf event array, perfBuffer bytes per CPU
	perf       bool
	perfBuffer int
	// derived are the string fields the runtime fills (Inspektor
	// Gadget's user names and stacks)
	derived []derived
}

type snapshotter struct {
	ds *datasource.DataSource
	// programs are run one after the other; the snapshot is their union
	programs []string
	// size of one entry the iterator writes: the struct's, before
	// stages add fields to the data source
	size int
	// derived are the string fields the runtime fills (Inspektor
	// Gadget's user names and stacks), as for tracers
	derived []derived
}

// interval is a data source whose records are a hash map's values, read
// and cleared every interval.
type interval struct {
	ds      *datasource.DataSource
	mapName string
	// size of one value: the struct's, before stages add fields
	size int
}

type param struct {
	// rules are gadget.yaml's possibleValues and typeHint
	rules paramRules
	desc  gadget.ParamDesc
	v     *ebpf.VariableSpec
	kind  btf.Type // the underlying *btf.Int
}

// gadgetSpec is what an object declares, before anything is loaded.
type gadgetSpec struct {
	coll         *ebpf.CollectionSpec
	tracers      []tracer
	snapshotters []snapshotter
	intervals    []interval
	params       map[string]*param
	// fallbacks maps a program to the one that replaces it where the
	// kernel refuses it; fallbackOf is the reverse
	fallbacks  map[string]string
	fallbackOf map[string]string
	// mntnsFilter is set when the object has Inspektor Gadget's
	// mount-namespace filter (gadget_filter_by_mntns and its map)
	mntnsFilter bool
	// mapIters are Inspektor Gadget's map iterators (igmapiter.go)
	mapIters []mapIter
	// optional holds the programs the kernel may refuse (optional.go)
	optional map[string]bool
}

// parseSpec reads obj and md; name is the gadget's name for errors.
func parseSpec(name string, obj, md []byte) (*gadgetSpec, error) {
	if len(obj) == 0 {
		return nil, fmt.Errorf("gadget %s: program.bpf.o is empty", name)
	}
	if f, err := elf.NewFile(bytes.NewReader(obj)); err == nil {
		if f.Section(".BTF") == nil {
			return nil, fmt.Errorf("gadget %s: program.bpf.o has no BTF: build it with clang -g (llvm-strip -g keeps BTF)", name)
		}
	}
	coll, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("gadget %s: read program.bpf.o (expected an eBPF ELF object built with clang -target bpf -g): %w", name, err)
	}
	if coll.Types == nil {
		return nil, fmt.Errorf("gadget %s: program.bpf.o has no BTF: build it with clang -g (llvm-strip -g keeps BTF)", name)
	}
	meta, err := ParseMetadata(md)
	if err != nil {
		return nil, fmt.Errorf("gadget %s: %w", name, err)
	}
	gs := &gadgetSpec{coll: coll, params: map[string]*param{}, fallbacks: map[string]string{}, fallbackOf: map[string]string{}, optional: map[string]bool{}}

	names := make([]string, 0, len(coll.Variables))
	for n := range coll.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	var sources []*datasource.DataSource
	for _, n := range names {
		v := coll.Variables[n]
		switch {
		case strings.HasPrefix(n, tracerPrefix) && strings.Contains(n, igSeparator):
			t, err := igTracer(coll, strings.TrimPrefix(n, tracerPrefix))
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			gs.tracers = append(gs.tracers, t)
			sources = append(sources, t.ds)
		case strings.HasPrefix(n, snapshotterPrefix) && strings.Contains(n, igSeparator):
			s, err := igSnapshotter(coll, strings.TrimPrefix(n, snapshotterPrefix))
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			gs.snapshotters = append(gs.snapshotters, s)
			sources = append(sources, s.ds)
		case strings.HasPrefix(n, igMapIterPrefix):
			mi, err := igMapIter(coll, strings.TrimPrefix(n, igMapIterPrefix))
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			gs.mapIters = append(gs.mapIters, mi)
			sources = append(sources, mi.ds)
		case strings.HasPrefix(n, igOptionalPrefix):
			prog := strings.TrimPrefix(n, igOptionalPrefix)
			if _, ok := coll.Programs[prog]; !ok {
				return nil, fmt.Errorf("gadget %s: GADGET_PROGRAM_OPTIONAL(%s): the object has no program %s", name, prog, prog)
			}
			gs.optional[prog] = true
		case strings.HasPrefix(n, tracerPrefix):
			ds, mapName, err := markerSource(v, strings.TrimPrefix(n, tracerPrefix), datasource.TypeTracer, "map")
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			m, ok := coll.Maps[mapName]
			if !ok || m.Type != ebpf.RingBuf {
				return nil, fmt.Errorf("gadget %s: tracer %s reads map %s, which is not a ring buffer in the object (declare it with GADGET_TRACER_MAP)", name, ds.Name(), mapName)
			}
			gs.tracers = append(gs.tracers, tracer{ds: ds, mapName: mapName})
			sources = append(sources, ds)
		case strings.HasPrefix(n, snapshotterPrefix):
			ds, prog, err := markerSource(v, strings.TrimPrefix(n, snapshotterPrefix), datasource.TypeSnapshotter, "program")
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			p, ok := coll.Programs[prog]
			if !ok || !strings.HasPrefix(p.SectionName, "iter/") {
				return nil, fmt.Errorf("gadget %s: snapshotter %s runs program %s, which is not an iter/ program in the object", name, ds.Name(), prog)
			}
			gs.snapshotters = append(gs.snapshotters, snapshotter{ds: ds, programs: []string{prog}, size: int(ds.Size())})
			sources = append(sources, ds)
		case strings.HasPrefix(n, intervalPrefix):
			ds, mapName, err := markerSource(v, strings.TrimPrefix(n, intervalPrefix), datasource.TypeInterval, "map")
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			m, ok := coll.Maps[mapName]
			if !ok || (m.Type != ebpf.Hash && m.Type != ebpf.LRUHash) {
				return nil, fmt.Errorf("gadget %s: interval source %s reads map %s, which is not a hash map in the object", name, ds.Name(), mapName)
			}
			if m.ValueSize != ds.Size() {
				return nil, fmt.Errorf("gadget %s: interval source %s: the values of map %s have %d bytes, its struct %d; the map's value type must be the struct", name, ds.Name(), mapName, m.ValueSize, ds.Size())
			}
			gs.intervals = append(gs.intervals, interval{ds: ds, mapName: mapName, size: int(ds.Size())})
			sources = append(sources, ds)
		case strings.HasPrefix(n, fallbackPrefix):
			prog := strings.TrimPrefix(n, fallbackPrefix)
			if v.Type == nil {
				return nil, fmt.Errorf("gadget %s: marker %s has no BTF type", name, n)
			}
			fb, err := markerName(v.Type, v.Value, "program")
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			for _, p := range []string{prog, fb} {
				if _, ok := coll.Programs[p]; !ok {
					return nil, fmt.Errorf("gadget %s: GADGET_FALLBACK(%s, %s): the object has no program %s", name, prog, fb, p)
				}
				if _, ok := gs.fallbacks[p]; ok {
					return nil, fmt.Errorf("gadget %s: program %s is in more than one GADGET_FALLBACK", name, p)
				}
				if _, ok := gs.fallbackOf[p]; ok {
					return nil, fmt.Errorf("gadget %s: program %s is in more than one GADGET_FALLBACK", name, p)
				}
			}
			if prog == fb {
				return nil, fmt.Errorf("gadget %s: GADGET_FALLBACK(%s, %s): a program cannot be its own fallback", name, prog, fb)
			}
			gs.fallbacks[prog] = fb
			gs.fallbackOf[fb] = prog
		case strings.HasPrefix(n, paramPrefix):
			key := strings.TrimPrefix(n, paramPrefix)
			p, err := paramOf(coll, key)
			if err != nil {
				return nil, fmt.Errorf("gadget %s: %w", name, err)
			}
			gs.params[key] = p
		}
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("gadget %s: the object declares no data source (use GADGET_TRACER, GADGET_SNAPSHOTTER or GADGET_INTERVAL of gadget/macros.h, or GADGET_TRACER, GADGET_SNAPSHOTTER or GADGET_MAPITER of Inspektor Gadget's ABI, igabi/gadget.h)", name)
	}
	if _, ok := coll.Variables[igFilterVar]; ok {
		if m, ok := coll.Maps[igFilterMap]; ok && m.Type == ebpf.Hash && m.KeySize == 8 {
			gs.mntnsFilter = true
		}
	}
	if err := meta.apply(sources, gs.params); err != nil {
		return nil, fmt.Errorf("gadget %s: %w", name, err)
	}
	return gs, nil
}

func markerSource(v *ebpf.VariableSpec, name string, typ datasource.Type, member string) (*datasource.DataSource, string, error) {
	if v.Type == nil {
		return nil, "", fmt.Errorf("marker %s has no BTF type", v.Name)
	}
	event, target, err := markerStruct(v.Type, v.Value, member)
	if err != nil {
		return nil, "", err
	}
	ds := datasource.New(name, typ)
	if err := structFields(ds, event); err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", typ, name, err)
	}
	if err := padTo(ds, event.Size); err != nil {
		return nil, "", err
	}
	return ds, target, nil
}

// padTo makes the record as big as the struct, trailing padding included.
func padTo(ds *datasource.DataSource, size uint32) error {
	if ds.Size() < size {
		if _, err := ds.AddFieldAt(datasource.Field{Name: "_pad", Kind: datasource.KindBytes, Offset: ds.Size(), Size: size - ds.Size(), Hidden: true}); err != nil {
			return err
		}
	}
	return nil
}

func paramOf(coll *ebpf.CollectionSpec, key string) (*param, error) {
	v, ok := coll.Variables[key]
	if !ok {
		return nil, fmt.Errorf("param %s: no global variable %s", key, key)
	}
	if !v.Constant() || v.Type == nil {
		return nil, fmt.Errorf("param %s: must be a `const volatile` global with a default value", key)
	}
	i, ok := btf.UnderlyingType(v.Type.Type).(*btf.Int)
	if !ok {
		return nil, fmt.Errorf("param %s: type %s is not supported; use an integer or bool", key, v.Type.Type)
	}
	p := &param{v: v, kind: i, desc: gadget.ParamDesc{Key: key, Type: paramType(i)}}
	def, err := formatParam(i, v.Value)
	if err != nil {
		return nil, fmt.Errorf("param %s: %w", key, err)
	}
	p.desc.Default = def
	return p, nil
}

func paramType(i *btf.Int) string {
	if i.Encoding == btf.Bool {
		return "bool"
	}
	if i.Encoding == btf.Signed {
		return fmt.Sprintf("int%d", i.Size*8)
	}
	return fmt.Sprintf("uint%d", i.Size*8)
}

func formatParam(i *btf.Int, b []byte) (string, error) {
	if len(b) != int(i.Size) {
		return "", fmt.Errorf("value has %d bytes, type %d", len(b), i.Size)
	}
	var u uint64
	switch i.Size {
	case 1:
		u = uint64(b[0])
	case 2:
		u = uint64(binary.NativeEndian.Uint16(b))
	case 4:
		u = uint64(binary.NativeEndian.Uint32(b))
	case 8:
		u = binary.NativeEndian.Uint64(b)
	default:
		return "", fmt.Errorf("integers of %d bytes are not supported", i.Size)
	}
	switch {
	case i.Encoding == btf.Bool:
		return strconv.FormatBool(u != 0), nil
	case i.Encoding == btf.Signed:
		shift := 64 - 8*i.Size
		return strconv.FormatInt(int64(u<<shift)>>shift, 10), nil
	}
	return strconv.FormatUint(u, 10), nil
}

// set checks s against the param's rules, parses it and writes it into
// the constant.
func (p *param) set(s string) error {
	if err := p.rules.check(p.desc.Key, s); err != nil {
		return err
	}
	b, err := p.encode(s)
	if err != nil {
		return err
	}
	copy(p.v.Value, b)
	return nil
}

// encode parses s as the variable's type and returns its bytes.
func (p *param) encode(s string) ([]byte, error) {
	i := p.kind.(*btf.Int)
	bits := int(i.Size * 8)
	var u uint64
	switch {
	case i.Encoding == btf.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("param %s: %q is not a bool (expected true or false)", p.desc.Key, s)
		}
		if b {
			u = 1
		}
	case i.Encoding == btf.Signed:
		n, err := strconv.ParseInt(s, 0, bits)
		if err != nil {
			return nil, fmt.Errorf("param %s: %q is not an %s", p.desc.Key, s, p.desc.Type)
		}
		u = uint64(n)
	default:
		n, err := strconv.ParseUint(s, 0, bits)
		if err != nil {
			return nil, fmt.Errorf("param %s: %q is not a %s (0 to %d)", p.desc.Key, s, p.desc.Type, uint64(1)<<bits-1)
		}
		u = n
	}
	b := make([]byte, i.Size)
	switch i.Size {
	case 1:
		b[0] = byte(u)
	case 2:
		binary.NativeEndian.PutUint16(b, uint16(u))
	case 4:
		binary.NativeEndian.PutUint32(b, uint32(u))
	case 8:
		binary.NativeEndian.PutUint64(b, u)
	}
	return b, nil
}

// Catalog reads what a gadget offers — data sources with their fields, and
// params with types and defaults — from program.bpf.o and gadget.yaml,
// without loading anything into the kernel (no privileges needed). The
// package loader uses it for a GadgetPackage's status.catalog. Errors name
// the object part or gadget.yaml key that is wrong.
func Catalog(obj, gadgetYAML []byte) (*gadget.Catalog, error) {
	rt, err := gadget.New(New(Options{}))
	if err != nil {
		return nil, err
	}
	info, err := rt.Info(context.Background(), gadget.Gadget{Name: "program.bpf.o", Object: obj, Metadata: gadgetYAML}, gadget.RunOptions{})
	if err != nil {
		return nil, err
	}
	return info.Catalog(), nil
}
