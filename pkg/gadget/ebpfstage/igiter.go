package ebpfstage

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// igSnapshotter reads the snapshotter that the marker
// gadget_snapshotter_<name>___<struct>___<prog>[___<prog>...] declares
// (rest is the part after the prefix): every program must be an iter/
// program of the object, and the struct must be in its BTF. A run runs
// the programs one after the other; the snapshot is their union.
func igSnapshotter(coll *ebpf.CollectionSpec, rest string) (snapshotter, error) {
	parts := strings.Split(rest, igSeparator)
	for _, p := range parts {
		if p == "" {
			parts = nil // reported below
			break
		}
	}
	if len(parts) < 3 {
		return snapshotter{}, fmt.Errorf("marker %s%s: expected %s<name>___<struct>___<program>[___<program>...]", snapshotterPrefix, rest, snapshotterPrefix)
	}
	name, structName, progs := parts[0], parts[1], parts[2:]
	for _, prog := range progs {
		p, ok := coll.Programs[prog]
		switch {
		case !ok:
			return snapshotter{}, fmt.Errorf("snapshotter %s: the object has no program %s", name, prog)
		case !strings.HasPrefix(p.SectionName, "iter/"):
			return snapshotter{}, fmt.Errorf("snapshotter %s: program %s is in section %s, not an iter/ program (e.g. SEC(\"iter/task\"))", name, prog, p.SectionName)
		}
	}
	ds, err := igStructSource(coll, name, structName, datasource.TypeSnapshotter)
	if err != nil {
		return snapshotter{}, err
	}
	size := int(ds.Size()) // before igConventions adds the derived fields
	derived, err := igConventions(coll, ds)
	if err != nil {
		return snapshotter{}, fmt.Errorf("snapshotter %s: %w", name, err)
	}
	return snapshotter{ds: ds, programs: progs, size: size, derived: derived}, nil
}

// igStructSource is a data source of type typ whose records are struct
// structName of the object's BTF, nested structs flattened into
// "<member>.<submember>" fields as Inspektor Gadget names them.
func igStructSource(coll *ebpf.CollectionSpec, name, structName string, typ datasource.Type) (*datasource.DataSource, error) {
	var s *btf.Struct
	if err := coll.Types.TypeByName(structName, &s); err != nil {
		return nil, fmt.Errorf("%s %s: the object's BTF has no struct %s: %w", typ, name, structName, err)
	}
	if s.Size == 0 {
		return nil, fmt.Errorf("%s %s: struct %s is empty", typ, name, structName)
	}
	ds := datasource.New(name, typ)
	if err := memberFields(ds, s, "", 0, true); err != nil {
		return nil, fmt.Errorf("%s %s: %w", typ, name, err)
	}
	if err := padTo(ds, s.Size); err != nil {
		return nil, err
	}
	return ds, nil
}
