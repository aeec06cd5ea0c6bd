package ebpfstage

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Inspektor Gadget's mount-namespace filter (bpf/include/igabi/gadget.h):
// a constant that turns it on and the hash map of allowed namespaces.
const (
	igFilterVar = "gadget_filter_by_mntns"
	igFilterMap = "gadget_mntns_filter_map"
)

// MntNsParam is the param that restricts a gadget with Inspektor Gadget's
// mount-namespace filter to the listed mount namespaces (inode numbers,
// comma-separated), in the kernel; only such gadgets have it.
const MntNsParam = "mntns"

// MntNsNone as the value of MntNsParam turns the mount-namespace filter on
// with an empty map: the kernel drops every event (a Trace confined to a
// namespace with no container on the node).
const MntNsNone = "none"

// igTracer reads the tracer that the marker
// gadget_tracer_<name>___<map>___<struct> declares (rest is the part after
// the prefix): the ring buffer map and the record struct, both of which
// must exist in the object.
func igTracer(coll *ebpf.CollectionSpec, rest string) (tracer, error) {
	parts := strings.Split(rest, igSeparator)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return tracer{}, fmt.Errorf("marker %s%s: expected %s<name>___<map>___<struct>", tracerPrefix, rest, tracerPrefix)
	}
	name, mapName, structName := parts[0], parts[1], parts[2]
	m, ok := coll.Maps[mapName]
	switch {
	case !ok:
		return tracer{}, fmt.Errorf("tracer %s: the object has no map %s (declare it with GADGET_TRACER_MAP(%s, size))", name, mapName, mapName)
	case m.Type != ebpf.RingBuf && m.Type != ebpf.PerfEventArray:
		return tracer{}, fmt.Errorf("tracer %s: map %s is a %s, not a ring buffer or perf event array (declare it with GADGET_TRACER_MAP)", name, mapName, m.Type)
	}
	ds, err := igStructSource(coll, name, structName, datasource.TypeTracer)
	if err != nil {
		return tracer{}, err
	}
	derived, err := igConventions(coll, ds)
	if err != nil {
		return tracer{}, fmt.Errorf("tracer %s: %w", name, err)
	}
	return tracer{ds: ds, mapName: mapName, ig: true, perf: m.Type == ebpf.PerfEventArray, derived: derived}, nil
}

// parseMntNs reads the mntns param: mount namespace inode numbers,
// comma-separated, or MntNsNone. on says whether the filter is on.
func parseMntNs(s string) (ids []uint64, on bool, err error) {
	if strings.TrimSpace(s) == MntNsNone {
		return nil, true, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, err := strconv.ParseUint(part, 10, 64)
		if err != nil || id == 0 {
			return nil, false, fmt.Errorf("param %s: %q is not a mount namespace inode number (expected e.g. 4026531841, as `stat -Lc %%i /proc/PID/ns/mnt` prints, or %q)", MntNsParam, part, MntNsNone)
		}
		ids = append(ids, id)
	}
	return ids, len(ids) > 0, nil
}
