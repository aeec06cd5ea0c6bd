package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// igTestGadget makes a gadget directory of one of bpf/testdata's objects.
func igTestGadget(t *testing.T, obj string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../bpf/testdata", obj))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "gadget")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "program.bpf.o"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGadgetRunIGSnapshotter: a snapshotter of Inspektor Gadget's ABI
// prints one snapshot and the run ends by itself, long before --timeout.
func TestGadgetRunIGSnapshotter(t *testing.T) {
	needRootForGadget(t)
	checkIGSnapshotRun(t, igTestGadget(t, "ig_snap_tasks.bpf.o"))
}

// checkIGSnapshotRun runs the ig_snap_tasks gadget from src: one snapshot
// that lists the test's own process once, enriched, and the run's end.
func checkIGSnapshotRun(t *testing.T, src string, extra ...string) {
	t.Helper()
	start := time.Now()
	out, errOut, err := gadgetCLI(context.Background(), append([]string{"gadget", "run", src, "--timeout", "10m"}, extra...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if d := time.Since(start); d > 5*time.Minute {
		t.Errorf("the run took %s: it did not end after the snapshot", d)
	}
	var self int
	for _, e := range jsonLines(t, out) {
		if int(e["pid"].(float64)) == os.Getpid() {
			self++
			if e["kernel"] != float64(0) || e["comm"] == "" {
				t.Errorf("own process: %v", e)
			}
			if c, ok := e["container"]; !ok || c != "" {
				t.Errorf("own process not enriched: %v, want container \"\" (the host)", e)
			}
		}
	}
	if self != 1 {
		t.Errorf("own process listed %d times, want once:\n%s", self, out)
	}
}

// TestGadgetRunIGTop: a map iterator fetches every map-fetch-interval; with
// map-fetch-count the run ends by itself after that many fetches; rows
// are sorted by sort.
func TestGadgetRunIGTop(t *testing.T) {
	needRootForGadget(t)
	checkIGTopRun(t, igTestGadget(t, "ig_top_opens.bpf.o"))
}

// checkIGTopRun runs the ig_top_opens gadget from src while the test opens
// a file: 3 fetches, then the run's end; rows of the test's process only,
// with counts.
func checkIGTopRun(t *testing.T, src string, extra ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "top-cli-marker")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	opener, stop := context.WithCancel(context.Background())
	defer stop()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		// a few opens every 10ms, not a busy loop, until the run ends
		pace := time.NewTicker(10 * time.Millisecond)
		defer pace.Stop()
		for {
			for j := 0; j < 3; j++ {
				if fd, err := unix.Open(path, unix.O_RDONLY, 0); err == nil {
					unix.Close(fd)
				}
			}
			select {
			case <-opener.Done():
				return
			case <-pace.C:
			}
		}
	}()
	defer func() { <-ended }()
	defer stop()
	start := time.Now()
	out, errOut, err := gadgetCLI(context.Background(), append([]string{"gadget", "run", src,
		"--param", "map-fetch-interval=100ms", "--param", "map-fetch-count=3", "--param", "sort=-opens",
		"--param", "targ_pid=" + strconv.Itoa(os.Getpid()), "--timeout", "10m"}, extra...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if d := time.Since(start); d > 5*time.Minute {
		t.Errorf("the run took %s: it did not end after 3 fetches", d)
	}
	lines := jsonLines(t, out)
	if len(lines) == 0 {
		t.Fatalf("no rows:\n%s", errOut)
	}
	var total float64
	for _, e := range lines {
		if int(e["pid"].(float64)) != os.Getpid() {
			t.Errorf("row of another process despite targ_pid: %v", e)
		}
		total += e["opens"].(float64)
	}
	if total < 3 {
		t.Errorf("%v opens in %d rows, want at least one batch of 3:\n%s", total, len(lines), out)
	}
}
