package ebpfstage

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Bounds of the user stack symboliser's caches: a run that sees more
// processes or binaries reads them again rather than growing.
const (
	maxSymProcs = 256 // mappings of this many processes
	maxSymFiles = 64  // symbol tables of this many ELF files
	// maxSymtab caps a symbol table read: a file in a container is the
	// container's to choose, and must not make the node role read gigabytes
	maxSymtab = 64 << 20
)

// userSymbols names the frames of user stacks: an address is looked up in
// the mappings of its process (/proc/<pid>/maps) and then in the
// .symtab/.dynsym of the mapped ELF file. Mappings are cached per pid and
// start time (a reused pid is another process), symbol tables per file
// path, inode and mtime (a rebuilt binary is another file); both caches
// are bounded. A process gone before its event is read keeps addresses.
// Tracers call it from their own goroutines.
type userSymbols struct {
	proc string // "/proc"

	mu    sync.Mutex
	procs bounded[procKey, *procMaps]
	files bounded[fileKey, *elfSyms]
}

func newUserSymbols(proc string) *userSymbols {
	return &userSymbols{proc: proc, procs: newBounded[procKey, *procMaps](maxSymProcs), files: newBounded[fileKey, *elfSyms](maxSymFiles)}
}

type procKey struct {
	pid   uint32
	start uint64 // clock ticks after boot (field 22 of /proc/<pid>/stat)
}

type fileKey struct {
	path  string
	ino   uint64
	mtime int64
}

// procMaps are a process's executable file mappings, sorted by start.
type procMaps struct {
	maps []mapping
}

type mapping struct {
	start, end, off uint64
	path            string
	// syms of the file, loaded at the first address in it (nil: none)
	syms   *elfSyms
	loaded bool
}

// names returns the function name of each of ips in process pid, "" where
// unknown; nil when the process is gone or its mappings unreadable.
func (u *userSymbols) names(pid uint32, ips []uint64) []string {
	if pid == 0 {
		return nil
	}
	start, err := u.startTime(pid)
	if err != nil {
		return nil
	}
	key := procKey{pid, start}
	u.mu.Lock()
	pm, ok := u.procs.get(key)
	u.mu.Unlock()
	if !ok {
		if pm, err = u.readMaps(pid); err != nil {
			return nil
		}
		u.mu.Lock()
		u.procs.put(key, pm)
		u.mu.Unlock()
	}
	out := make([]string, len(ips))
	for n, ip := range ips {
		if ip == 0 {
			break
		}
		// a return address points after its call: look up the call
		if n > 0 {
			ip--
		}
		i := sort.Search(len(pm.maps), func(i int) bool { return pm.maps[i].end > ip })
		if i == len(pm.maps) || pm.maps[i].start > ip {
			continue
		}
		m := &pm.maps[i]
		syms := u.fileSyms(pid, pm, i)
		if syms == nil {
			continue
		}
		out[n] = syms.name(ip - m.start + m.off)
	}
	return out
}

// fileSyms returns the symbols of pm's mapping i, loading them once.
func (u *userSymbols) fileSyms(pid uint32, pm *procMaps, i int) *elfSyms {
	u.mu.Lock()
	m := pm.maps[i]
	u.mu.Unlock()
	if m.loaded {
		return m.syms
	}
	// through the process's root: the path is in its mount namespace
	f, err := os.Open(filepath.Join(u.proc, strconv.FormatUint(uint64(pid), 10), "root", m.path))
	var syms *elfSyms
	if err == nil {
		syms = u.openSyms(f, m.path)
		f.Close()
	}
	u.mu.Lock()
	pm.maps[i].syms, pm.maps[i].loaded = syms, true
	u.mu.Unlock()
	return syms
}

// openSyms returns f's symbols from the cache or reads them.
func (u *userSymbols) openSyms(f *os.File, path string) *elfSyms {
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	key := fileKey{path: path, mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key.ino = st.Ino
	}
	u.mu.Lock()
	syms, ok := u.files.get(key)
	u.mu.Unlock()
	if ok {
		return syms
	}
	syms, err = readELFSyms(f)
	if err != nil {
		syms = nil // not ELF or no symbols: addresses, and not read again
	}
	u.mu.Lock()
	u.files.put(key, syms)
	u.mu.Unlock()
	return syms
}

// startTime reads a process's start time, which tells a reused pid apart.
func (u *userSymbols) startTime(pid uint32) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(u.proc, strconv.FormatUint(uint64(pid), 10), "stat"))
	if err != nil {
		return 0, err
	}
	// the command may hold spaces and parentheses: count after the last ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	const startField = 22 - 3 // field 22, counted from the state (field 3)
	if len(fields) <= startField {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[startField], 10, 64)
}

// readMaps reads the executable file mappings of a process.
func (u *userSymbols) readMaps(pid uint32) (*procMaps, error) {
	f, err := os.Open(filepath.Join(u.proc, strconv.FormatUint(uint64(pid), 10), "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pm := &procMaps{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/cat"
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || len(fields[1]) < 3 || fields[1][2] != 'x' || !strings.HasPrefix(fields[5], "/") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(fields[2], 16, 64)
		if !ok || err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		pm.maps = append(pm.maps, mapping{start: start, end: end, off: off, path: strings.Join(fields[5:], " ")})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(pm.maps, func(i, j int) bool { return pm.maps[i].start < pm.maps[j].start })
	return pm, nil
}

// elfSyms are the function symbols of one ELF file, sorted by address,
// with its loadable segments to turn file offsets into addresses.
type elfSyms struct {
	segs  []elf.ProgHeader
	addrs []uint64
	sizes []uint64
	names []string
}

func readELFSyms(f *os.File) (*elfSyms, error) {
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	s := &elfSyms{}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			s.segs = append(s.segs, p.ProgHeader)
		}
	}
	var all []elf.Symbol
	for _, t := range []struct {
		section string
		read    func() ([]elf.Symbol, error)
	}{{".symtab", ef.Symbols}, {".dynsym", ef.DynamicSymbols}} {
		if sec := ef.Section(t.section); sec == nil || sec.Size > maxSymtab {
			continue
		}
		if syms, err := t.read(); err == nil {
			all = append(all, syms...)
		}
	}
	all = filterFuncs(all)
	if len(all) == 0 {
		return nil, fmt.Errorf("no function symbols")
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Value < all[j].Value })
	for _, sym := range all {
		s.addrs, s.sizes, s.names = append(s.addrs, sym.Value), append(s.sizes, sym.Size), append(s.names, sym.Name)
	}
	return s, nil
}

func filterFuncs(syms []elf.Symbol) []elf.Symbol {
	out := syms[:0]
	for _, sym := range syms {
		if elf.ST_TYPE(sym.Info) == elf.STT_FUNC && sym.Value != 0 && sym.Name != "" {
			out = append(out, sym)
		}
	}
	return out
}

// name returns the function at file offset off, or "".
func (s *elfSyms) name(off uint64) string {
	addr, ok := uint64(0), false
	for _, p := range s.segs {
		if off >= p.Off && off < p.Off+p.Filesz {
			addr, ok = off-p.Off+p.Vaddr, true
			break
		}
	}
	if !ok {
		return ""
	}
	i := sort.Search(len(s.addrs), func(i int) bool { return s.addrs[i] > addr })
	if i == 0 {
		return ""
	}
	i--
	if s.sizes[i] != 0 && addr >= s.addrs[i]+s.sizes[i] {
		return ""
	}
	return s.names[i]
}

// bounded is a map that forgets its oldest entry when full. Not safe for
// concurrent use.
type bounded[K comparable, V any] struct {
	max   int
	m     map[K]V
	order []K // insertion order, oldest first
}

func newBounded[K comparable, V any](max int) bounded[K, V] {
	return bounded[K, V]{max: max, m: map[K]V{}}
}

func (b *bounded[K, V]) get(k K) (V, bool) {
	v, ok := b.m[k]
	return v, ok
}

func (b *bounded[K, V]) put(k K, v V) {
	if _, ok := b.m[k]; ok {
		b.m[k] = v
		return
	}
	if len(b.order) >= b.max {
		delete(b.m, b.order[0])
		b.order = b.order[1:]
	}
	b.m[k] = v
	b.order = append(b.order, k)
}
