package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimBinaryRSS unmaps this process's clean read-only mappings of its own
// binary (text and rodata) and has the kernel map them back page by page
// on use (MADV_RANDOM: no fault-around, no readahead). The kernel maps a
// file's large page-cache folios whole, so the binary otherwise counts
// some 60 MB of text and rodata in the RSS of a gadget run that executes a
// small part of it. The pages stay in the page cache: this costs only the
// re-faults of the pages in use. A mapping with anonymous (relocated,
// copied-on-write) pages is left alone: dropping them would lose the
// relocations.
func trimBinaryRSS() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return fmt.Errorf("read own mappings: %w", err)
	}
	defer f.Close()
	type mapping struct{ lo, hi uint64 }
	var (
		clean []mapping
		cur   *mapping
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			// 00400000-013ad000 r--p 00000000 fd:00 123 /path/to/gadgetpm
			cur = nil
			if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
				continue
			}
			start, end, _ := strings.Cut(fields[0], "-")
			lo, err1 := strconv.ParseUint(start, 16, 64)
			hi, err2 := strconv.ParseUint(end, 16, 64)
			if err1 != nil || err2 != nil || hi <= lo {
				continue
			}
			clean = append(clean, mapping{lo, hi})
			cur = &clean[len(clean)-1]
			continue
		}
		if cur != nil && fields[0] == "Anonymous:" && (len(fields) < 2 || fields[1] != "0") {
			clean = clean[:len(clean)-1]
			cur = nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read own mappings: %w", err)
	}
	for _, m := range clean {
		for _, advice := range []int{unix.MADV_RANDOM, unix.MADV_DONTNEED} {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(m.lo), uintptr(m.hi-m.lo), uintptr(advice)); e != 0 {
				return fmt.Errorf("madvise %x-%x of %s: %w", m.lo, m.hi, exe, e)
			}
		}
	}
	return nil
}
