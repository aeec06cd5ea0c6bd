package ebpfstage

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
)

// VarMntNsFilter is the gadget.Context var under which a run whose
// Inspektor Gadget mount-namespace filter is on (the mntns param is set)
// publishes its *MntNsFilter, so that the node can keep the filter in step
// with the containers that come and go while the run goes.
const VarMntNsFilter = "ebpf.mntnsFilter"

// MntNsFilter is the kernel map of the mount namespaces a run reports. Its
// methods are safe for concurrent use; before the object is loaded Set
// changes what the map will be filled with, after the run ends it does
// nothing.
type MntNsFilter struct {
	gadget string

	mu sync.Mutex
	// ids is what the map holds, or will hold once loaded; guarded by mu
	ids map[uint64]bool
	// m is the loaded map: nil before PreStart and after Close; guarded
	// by mu
	m     *ebpf.Map
	value []byte // guarded by mu: the value every key gets
}

func newMntNsFilter(gadget string, ids []uint64) *MntNsFilter {
	f := &MntNsFilter{gadget: gadget, ids: map[uint64]bool{}}
	for _, id := range ids {
		f.ids[id] = true
	}
	return f
}

// IDs returns the mount namespaces the filter lets through, sorted.
func (f *MntNsFilter) IDs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]uint64, 0, len(f.ids))
	for id := range f.ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Set makes ids the mount namespaces the filter lets through: ids missing
// from the map are added, ids no longer wanted are removed. added and
// removed count the changes. A set larger than the map is refused whole.
func (f *MntNsFilter) Set(ids []uint64) (added, removed int, err error) {
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m != nil {
		if max := int(f.m.MaxEntries()); len(want) > max {
			return 0, 0, fmt.Errorf("gadget %s: %d mount namespaces selected, map %s holds %d; select fewer containers", f.gadget, len(want), igFilterMap, max)
		}
	}
	var errs []error
	for id := range f.ids {
		if want[id] {
			continue
		}
		if f.m != nil {
			if err := f.m.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("remove mount namespace %d: %w", id, err))
				continue
			}
		}
		delete(f.ids, id)
		removed++
	}
	for id := range want {
		if f.ids[id] {
			continue
		}
		if f.m != nil {
			if err := f.m.Put(id, f.value); err != nil {
				errs = append(errs, fmt.Errorf("add mount namespace %d: %w", id, err))
				continue
			}
		}
		f.ids[id] = true
		added++
	}
	if err := errors.Join(errs...); err != nil {
		return added, removed, fmt.Errorf("gadget %s: update %s: %w", f.gadget, igFilterMap, err)
	}
	return added, removed, nil
}

// load fills the loaded map m with the wanted ids, before any program is
// attached, so no event of another namespace is ever copied.
func (f *MntNsFilter) load(m *ebpf.Map) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if max := int(m.MaxEntries()); len(f.ids) > max {
		return fmt.Errorf("gadget %s: param %s lists %d mount namespaces (in a Trace: the containers its spec.filter selects), map %s holds %d; select fewer", f.gadget, MntNsParam, len(f.ids), igFilterMap, max)
	}
	f.value = make([]byte, m.ValueSize())
	if len(f.value) > 0 {
		f.value[0] = 1
	}
	for id := range f.ids {
		if err := m.Put(id, f.value); err != nil {
			return fmt.Errorf("gadget %s: fill %s with mount namespace %d: %w", f.gadget, igFilterMap, id, err)
		}
	}
	f.m = m
	return nil
}

// unload forgets the map before the collection is closed.
func (f *MntNsFilter) unload() {
	f.mu.Lock()
	f.m = nil
	f.mu.Unlock()
}
