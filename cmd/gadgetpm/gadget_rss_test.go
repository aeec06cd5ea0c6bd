package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// exeReadOnlyRSS is the resident kB of this process's read-only mappings
// of its own binary.
func exeReadOnlyRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == exe && !strings.Contains(fields[1], "w")
			continue
		}
		if in && fields[0] == "Rss:" {
			kb, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += kb
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// TestTrimBinaryRSS: after the trim the binary's text and rodata count
// only what is used again in the RSS, and the process still runs (the
// relocated read-only page of a cgo binary is kept: dropping it would
// crash the next call through it).
func TestTrimBinaryRSS(t *testing.T) {
	before := exeReadOnlyRSS(t)
	for range 2 { // twice: a second trim finds only clean mappings again
		if err := trimBinaryRSS(); err != nil {
			t.Fatalf("trimBinaryRSS: %v", err)
		}
	}
	after := exeReadOnlyRSS(t)
	t.Logf("resident text and rodata of the binary: %d kB before, %d kB after", before, after)
	if after >= before {
		t.Errorf("resident text and rodata of the binary: %d kB after the trim, want less than the %d kB before", after, before)
	}
	// calls that go through the binary's relocations and the runtime's
	// allocator still work
	if _, err := os.ReadFile("/proc/self/status"); err != nil {
		t.Fatal(err)
	}
	_ = strings.Repeat("x", 1<<20)
}
