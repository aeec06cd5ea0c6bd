package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
)

// kernelIDs reads the eBPF program, map and link ids behind the open file
// descriptors of process pid from /proc/PID/fdinfo.
func kernelIDs(t *testing.T, pid int) map[string][]uint32 {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string][]uint32{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			key, val, ok := strings.Cut(line, ":")
			if !ok || (key != "prog_id" && key != "map_id" && key != "link_id") {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(val), 10, 32)
			if err == nil {
				ids[key] = append(ids[key], uint32(id))
			}
		}
	}
	return ids
}

// kernelObjectExists asks the kernel whether the object of that kind and id
// still exists.
func kernelObjectExists(kind string, id uint32) (bool, error) {
	var c interface{ Close() error }
	var err error
	switch kind {
	case "prog_id":
		c, err = ebpf.NewProgramFromID(ebpf.ProgramID(id))
	case "map_id":
		c, err = ebpf.NewMapFromID(ebpf.MapID(id))
	case "link_id":
		c, err = link.NewFromID(link.ID(id))
	default:
		return false, fmt.Errorf("unknown kind %s", kind)
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, c.Close()
}

// TestGadgetRunStopsOnSIGINT runs `gadgetpm gadget run` as a process, sends
// it SIGINT (what Ctrl-C does) right after causing an event, and checks that
// it exits 0, has written that last event and the summary, and that every
// eBPF program, map and link it held is gone from the kernel.
func TestGadgetRunStopsOnSIGINT(t *testing.T) {
	needRootForGadget(t)
	bin, err := devBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first, last := filepath.Join(dir, "sigint-first"), filepath.Join(dir, "sigint-last")
	for _, f := range []string{first, last} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	open := func(p string) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	cmd := exec.Command(bin, "gadget", "run", filepath.Join(packagesDir, "trace-open"), "--filter", "fname~^"+dir+"/")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testlog.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() { // owned by this test: ends when the process closes stdout
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	// open the first marker until its event shows: the programs are attached
	var got []string
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	hang := time.After(60 * time.Second) // bounds a hang only
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("gadget run ended before its first event: %v\n%s", <-exited, stderr.String())
			}
			got = append(got, l)
			if strings.Contains(l, first) {
				break wait
			}
		case <-tick.C:
			open(first)
		case <-hang:
			t.Fatalf("no event of %s after 60s; stderr:\n%s", first, stderr.String())
		}
	}
	held := kernelIDs(t, cmd.Process.Pid)
	if len(held["prog_id"]) == 0 || len(held["map_id"]) == 0 || len(held["link_id"]) == 0 {
		t.Fatalf("a running gadget holds no programs, maps or links? %v", held)
	}

	open(last) // its event is in the ring buffer when open returns
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		got = append(got, l)
	}
	if err := <-exited; err != nil {
		t.Fatalf("after SIGINT: %v (want exit status 0)\nstderr:\n%s", err, stderr.String())
	}
	out := strings.Join(got, "\n")
	if !strings.Contains(out, `"fname":"`+last+`"`) {
		t.Errorf("the event caused just before SIGINT was not written:\n%s", out)
	}
	if !strings.Contains(stderr.String(), "gadgetpm: open: ") {
		t.Errorf("no summary on stderr after SIGINT: %q", stderr.String())
	}

	// the kernel frees objects asynchronously once the last reference goes
	for kind, ids := range held {
		for _, id := range ids {
			eventually.NoError(t, 30*time.Second, fmt.Sprintf("%s %d of the stopped gadget to leave the kernel", kind, id), func() error {
				exists, err := kernelObjectExists(kind, id)
				if err != nil {
					return fmt.Errorf("look up: %w", err)
				}
				if exists {
					return errors.New("it still exists")
				}
				return nil
			})
		}
	}
}
