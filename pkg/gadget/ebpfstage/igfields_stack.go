package ebpfstage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// kallsyms is the kernel's text symbols sorted by address.
type kallsyms struct {
	addrs []uint64
	names []string
}

// readKallsyms reads the function symbols of path (/proc/kallsyms). Without
// the privilege to see addresses (kptr_restrict) every address is 0 and the
// table is empty: stacks then show addresses.
func readKallsyms(path string) (*kallsyms, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	defer f.Close()
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "ffffffff81000000 T _stext [module]"
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		switch fields[1] {
		case "t", "T", "w", "W":
		default:
			continue
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		syms = append(syms, sym{addr, fields[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kernel symbols: %w", err)
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	k := &kallsyms{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		k.addrs[i], k.names[i] = s.addr, s.name
	}
	return k, nil
}

// name returns the function containing addr, or "".
func (k *kallsyms) name(addr uint64) string {
	i := sort.Search(len(k.addrs), func(i int) bool { return k.addrs[i] > addr })
	if i == 0 {
		return ""
	}
	return k.names[i-1]
}

// stackFormatter fills the derived fields of one run: names of user and
// group ids, frames of stacks. Tracers call it from their own goroutines.
type stackFormatter struct {
	ids *idNames
	// kstack and ustack are the loaded stack maps (nil without them)
	kstack, ustack *ebpf.Map
	kallsymsPath   string
	log            *slog.Logger
	users          *userSymbols

	once sync.Once
	syms *kallsyms // set once, by the first kernel stack
}

// fill writes the derived fields of r. buf is the caller's scratch space.
func (s *stackFormatter) fill(d []derived, r *datasource.Record, buf []byte) []byte {
	for _, x := range d {
		switch x.kind {
		case derivedUser:
			x.dst.SetString(r, s.ids.user(uint32(x.src.Uint(r))))
		case derivedGroup:
			x.dst.SetString(r, s.ids.group(uint32(x.src.Uint(r))))
		case derivedKernelStack, derivedUserStack:
			pid := uint32(0)
			if raw := r.Raw(); x.pidOff >= 0 && x.pidOff+4 <= len(raw) {
				pid = binary.NativeEndian.Uint32(raw[x.pidOff:])
			}
			buf = s.appendStack(buf[:0], x.kind, x.src.Int(r), pid, int(x.dst.Size)-1)
			x.dst.SetString(r, string(buf))
		}
	}
	return buf
}

// appendStack writes the frames of stack id, innermost first, as
// "[0]sym; [1]sym", an address "0xaddr" where no symbol is known, stopping
// at the last whole frame that fits in max bytes. User stacks are looked
// up in the memory of process pid.
func (s *stackFormatter) appendStack(dst []byte, kind derivedKind, id int64, pid uint32, max int) []byte {
	m := s.kstack
	if kind == derivedUserStack {
		m = s.ustack
	}
	if id < 0 || m == nil {
		return dst
	}
	ips := make([]uint64, m.ValueSize()/8)
	if err := m.Lookup(uint32(id), ips); err != nil {
		return dst
	}
	var syms *kallsyms
	var users []string
	if kind == derivedUserStack && s.users != nil {
		users = s.users.names(pid, ips)
	}
	if kind == derivedKernelStack {
		s.once.Do(func() {
			var err error
			if s.syms, err = readKallsyms(s.kallsymsPath); err != nil {
				s.log.Warn("kernel stacks show addresses, not symbols", "error", err)
			}
		})
		syms = s.syms
	}
	var frame []byte
	for n, ip := range ips {
		if ip == 0 {
			break
		}
		frame = frame[:0]
		if n > 0 {
			frame = append(frame, "; "...)
		}
		frame = append(frame, '[')
		frame = strconv.AppendInt(frame, int64(n), 10)
		frame = append(frame, ']')
		name := ""
		if syms != nil {
			name = syms.name(ip)
		} else if n < len(users) {
			name = users[n]
		}
		if name != "" {
			frame = append(frame, name...)
		} else {
			frame = append(frame, "0x"...)
			frame = strconv.AppendUint(frame, ip, 16)
		}
		if len(dst)+len(frame) > max {
			break
		}
		dst = append(dst, frame...)
	}
	return dst
}
