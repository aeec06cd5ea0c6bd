package ebpfstage

import (
	"bytes"
	"cmp"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// The params of gadgets with Inspektor Gadget map iterators, under
// Inspektor Gadget's names.
const (
	// MapFetchIntervalParam is how often map iterators read and clear
	// their maps (a duration, default 1s, at least 10ms).
	MapFetchIntervalParam = "map-fetch-interval"
	// MapFetchCountParam is how many fetches a run makes before it ends
	// by itself; 0 (the default) fetches until the run is stopped.
	MapFetchCountParam = "map-fetch-count"
	// SortParam orders the rows of one fetch: field names, comma-separated,
	// each sorting descending with a leading "-"; default: map order.
	SortParam = "sort"
	// MaxEntriesParam keeps the first N rows of each fetch, after
	// sorting; 0 (the default) keeps all.
	MaxEntriesParam = "max-entries"
)

// mapIter is a data source whose records are the entries of a hash map
// (key struct, then value struct), read and deleted every fetch interval.
type mapIter struct {
	ds      *datasource.DataSource
	mapName string
	keySize int
	valSize int
}

// igMapIter reads the map iterator that the marker
// gadget_mapiter_<name>___<map> declares (rest is the part after the
// prefix): a hash map whose key and value types are structs.
func igMapIter(coll *ebpf.CollectionSpec, rest string) (mapIter, error) {
	name, mapName, ok := strings.Cut(rest, igSeparator)
	if !ok || name == "" || mapName == "" || strings.Contains(mapName, igSeparator) {
		return mapIter{}, fmt.Errorf("marker %s%s: expected %s<name>___<map>", igMapIterPrefix, rest, igMapIterPrefix)
	}
	m, ok := coll.Maps[mapName]
	switch {
	case !ok:
		return mapIter{}, fmt.Errorf("map iterator %s: the object has no map %s", name, mapName)
	case m.Type != ebpf.Hash && m.Type != ebpf.LRUHash:
		return mapIter{}, fmt.Errorf("map iterator %s: map %s is a %s, not a hash map", name, mapName, m.Type)
	}
	key, kok := btf.UnderlyingType(m.Key).(*btf.Struct)
	val, vok := btf.UnderlyingType(m.Value).(*btf.Struct)
	if !kok || !vok {
		return mapIter{}, fmt.Errorf("map iterator %s: the key and value of map %s must be structs (declare them with __type(key, struct ...) and __type(value, struct ...))", name, mapName)
	}
	if m.KeySize != key.Size || m.ValueSize != val.Size {
		return mapIter{}, fmt.Errorf("map iterator %s: map %s has %d-byte keys and %d-byte values, its structs %s and %s have %d and %d", name, mapName, m.KeySize, m.ValueSize, key.Name, val.Name, key.Size, val.Size)
	}
	ds := datasource.New(name, datasource.TypeInterval)
	if err := memberFields(ds, key, "", 0, true); err != nil {
		return mapIter{}, fmt.Errorf("map iterator %s: key: %w", name, err)
	}
	if err := memberFields(ds, val, "", key.Size, true); err != nil {
		return mapIter{}, fmt.Errorf("map iterator %s: value: %w", name, err)
	}
	if err := padTo(ds, key.Size+val.Size); err != nil {
		return mapIter{}, err
	}
	return mapIter{ds: ds, mapName: mapName, keySize: int(key.Size), valSize: int(val.Size)}, nil
}

// mapIterParams are the params every gadget with a map iterator has.
func mapIterParams() []gadget.ParamDesc {
	return []gadget.ParamDesc{
		{Key: MapFetchIntervalParam, Type: "duration", Default: defaultInterval.String(),
			Description: "How often the gadget's map iterators read and clear their maps."},
		{Key: MapFetchCountParam, Type: "int", Default: "0",
			Description: "End the run after this many fetches; 0: fetch until stopped."},
		{Key: SortParam, Type: "string",
			Description: "Order the rows of each fetch by these fields, comma-separated; a leading - sorts descending (e.g. -opens,comm)."},
		{Key: MaxEntriesParam, Type: "int", Default: "0",
			Description: "Keep only the first rows of each fetch, after sorting; 0: all."},
	}
}

// sortKey is one field of the sort param.
type sortKey struct {
	name string
	desc bool
}

// mapIterConfig is a run's reading of the map iterators' params.
type mapIterConfig struct {
	every time.Duration
	count int
	sort  []sortKey
	max   int
}

// parseMapIterConfig reads the map iterators' params; every sort field
// must be a field of every map iterator.
func parseMapIterConfig(gs *gadgetSpec, params gadget.Params) (mapIterConfig, error) {
	cfg := mapIterConfig{every: defaultInterval}
	for _, k := range []string{MapFetchIntervalParam, MapFetchCountParam, SortParam, MaxEntriesParam} {
		if _, clash := gs.params[k]; clash {
			return cfg, fmt.Errorf("GADGET_PARAM(%s) clashes with the runtime's param of that name for map iterators; rename the variable", k)
		}
	}
	if v, ok := params[MapFetchIntervalParam]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < minInterval {
			return cfg, fmt.Errorf("param %s: %q is not a duration of at least %s (e.g. 1s, 500ms)", MapFetchIntervalParam, v, minInterval)
		}
		cfg.every = d
	}
	for key, dst := range map[string]*int{MapFetchCountParam: &cfg.count, MaxEntriesParam: &cfg.max} {
		if v, ok := params[key]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return cfg, fmt.Errorf("param %s: %q is not a whole number of at least 0", key, v)
			}
			*dst = n
		}
	}
	for _, f := range strings.Split(params[SortParam], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k := sortKey{name: strings.TrimPrefix(f, "-"), desc: strings.HasPrefix(f, "-")}
		for _, mi := range gs.mapIters {
			if mi.ds.Field(k.name) == nil {
				names := make([]string, 0, len(mi.ds.Fields()))
				for _, fl := range mi.ds.Fields() {
					if !fl.Hidden {
						names = append(names, fl.Name)
					}
				}
				return cfg, fmt.Errorf("param %s: map iterator %s has no field %s (fields: %s)", SortParam, mi.ds.Name(), k.name, strings.Join(names, ", "))
			}
		}
		cfg.sort = append(cfg.sort, k)
	}
	return cfg, nil
}

// mapFetcher reads one map iterator's map into rows, orders and cuts
// them and emits them. It owns its buffers: one per goroutine.
type mapFetcher struct {
	mi   mapIter
	cfg  mapIterConfig
	d    *drainer
	rows []*datasource.Record // reused across fetches; n in use
	n    int
	sort []*datasource.Field
}

func newMapFetcher(m *ebpf.Map, mi mapIter, cfg mapIterConfig) *mapFetcher {
	f := &mapFetcher{mi: mi, cfg: cfg}
	for _, k := range cfg.sort {
		f.sort = append(f.sort, mi.ds.Field(k.name))
	}
	f.d = newDrainer(m, "map iterator "+mi.ds.Name(), mi.mapName, mi.valSize, f.add)
	return f
}

// add keeps one entry as a row: the key's bytes, then the value's.
func (f *mapFetcher) add(key, value []byte) error {
	if f.n == len(f.rows) {
		f.rows = append(f.rows, f.mi.ds.NewRecord())
	}
	r := f.rows[f.n]
	r.Load(key)
	copy(r.Raw()[f.mi.keySize:], value)
	f.n++
	return nil
}

// fetch reads and clears the map and emits its entries.
func (f *mapFetcher) fetch() error {
	f.n = 0
	if err := f.d.drain(); err != nil {
		return err
	}
	rows := f.rows[:f.n]
	if len(f.sort) > 0 {
		sort.SliceStable(rows, func(a, b int) bool { return f.less(rows[a], rows[b]) })
	}
	if f.cfg.max > 0 && len(rows) > f.cfg.max {
		rows = rows[:f.cfg.max]
	}
	for _, r := range rows {
		if err := f.mi.ds.Emit(r); err != nil {
			return err
		}
	}
	return nil
}

func (f *mapFetcher) less(a, b *datasource.Record) bool {
	for j, fl := range f.sort {
		c := compareField(fl, a, b)
		if f.cfg.sort[j].desc {
			c = -c
		}
		if c != 0 {
			return c < 0
		}
	}
	return false
}

// compareField orders two records by one field: numbers by value,
// strings and other bytes lexically.
func compareField(f *datasource.Field, a, b *datasource.Record) int {
	switch {
	case f.Kind.Integer() && f.Signed:
		x, y := f.Int(a), f.Int(b)
		return cmp.Compare(x, y)
	case f.Kind.Integer():
		return cmp.Compare(f.Uint(a), f.Uint(b))
	case f.Kind == datasource.KindString:
		return bytes.Compare(f.Str(a), f.Str(b))
	}
	return bytes.Compare(f.Bytes(a), f.Bytes(b))
}

// runMapIter fetches every cfg.every, and once more when Stop closes stop
// (unless it made its count of fetches); it ends without fetching when
// Close closes abort. A goroutine that made its count decrements left;
// the last one ends the run.
func (i *instance) runMapIter(gctx *gadget.Context, mi mapIter, cfg mapIterConfig, left *atomic.Int32, stop, abort <-chan struct{}) {
	defer i.wg.Done()
	f := newMapFetcher(i.coll.Maps[mi.mapName], mi, cfg)
	if fetchEvery(gctx, cfg.every, cfg.count, f.fetch, stop, abort) && left.Add(-1) == 0 {
		gctx.Cancel()
	}
}
