package ebpfstage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// ustackProgram is a C program whose user stack at kill(2) passes through
// functions of known names: main → gpm_ustack_outer → gpm_ustack_inner →
// kill. Frame pointers let the kernel walk it; kill's wrapper sets up no
// frame of its own, so the innermost function seen after it is the
// outer one. It stays alive until its stdin closes, so that its mappings
// can be read when the event is.
const ustackProgram = `#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) void gpm_ustack_inner(int pid) { kill(pid, SIGUSR2); __asm__ volatile(""); }
__attribute__((noinline)) void gpm_ustack_outer(int pid) { gpm_ustack_inner(pid); __asm__ volatile(""); }
int main(int argc, char **argv) { char c; gpm_ustack_outer(atoi(argv[1])); return read(0, &c, 1) < 0; }
`

// buildUstackProgram compiles ustackProgram as a static binary.
func buildUstackProgram(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("needs gcc to build the C test program")
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "gpm-ustack.c"), filepath.Join(dir, "gpm-ustack")
	if err := os.WriteFile(src, []byte(ustackProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-static", "-O0", "-fno-omit-frame-pointer", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// TestIGUserStackSymbolised: a user stack reads as function names of the
// process's binary, as a kernel stack does, while the process lives.
func TestIGUserStackSymbolised(t *testing.T) {
	needRoot(t)
	bin := buildUstackProgram(t)
	target := exec.Command("sleep", "30")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = target.Process.Kill(); _ = target.Wait() }()
	sender := exec.Command(bin, strconv.Itoa(target.Process.Pid))
	stdin, err := sender.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// the sender lives until the run has read and formatted every event
	defer func() { stdin.Close(); _ = sender.Wait() }()
	c, _ := runWhile(t, fieldsGadget(t), nil, func() {
		if err := sender.Start(); err != nil {
			t.Fatal(err)
		}
		// SIGUSR2 ends sleep: once it has, the signal was generated
		_ = target.Wait()
	})
	sigs := c.find("signal", func(e map[string]any) bool {
		return int(num(e["target"])) == target.Process.Pid && int(num(e["pid"])) == sender.Process.Pid
	})
	if len(sigs) != 1 {
		t.Fatalf("signal from %d to %d: want one event, got %v", sender.Process.Pid, target.Process.Pid, sigs)
	}
	stack := fmt.Sprint(sigs[0]["ustack"])
	t.Logf("ustack: %s", stack)
	want := regexp.MustCompile(`^\[0\]\w*kill; \[1\]gpm_ustack_outer; \[2\]main(; |$)`)
	if !want.MatchString(stack) {
		t.Errorf("ustack = %q: want the frames named, like a kernel stack's (%s)", stack, want)
	}
}

// TestUserSymbolsOfGoneProcess: a process gone before its event is read
// keeps addresses (no names, no error).
func TestUserSymbolsOfGoneProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	u := newUserSymbols("/proc")
	if got := u.names(uint32(cmd.Process.Pid), []uint64{0x401000, 0x401010}); got != nil {
		t.Errorf("names of a gone process = %q, want none", got)
	}
}

// TestBoundedForgetsOldest: the symboliser's caches stay within their
// bound on a node with many processes, forgetting the oldest entry.
func TestBoundedForgetsOldest(t *testing.T) {
	b := newBounded[int, string](2)
	b.put(1, "a")
	b.put(2, "b")
	b.put(2, "B") // an update takes no room
	b.put(3, "c")
	for k, want := range map[int]string{2: "B", 3: "c"} {
		if v, ok := b.get(k); !ok || v != want {
			t.Errorf("get(%d) = %q, %v, want %q", k, v, ok, want)
		}
	}
	if _, ok := b.get(1); ok || len(b.m) != 2 {
		t.Errorf("the oldest entry is kept or the cache grew: %v", b.m)
	}
}
