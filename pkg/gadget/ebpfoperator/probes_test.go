package ebpfoperator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// kernelRefused reports whether err is the kernel declining a section it
// was built without: no kprobes (the runtime says so with ErrNotSupported),
// or no BPF trampolines for fentry/fexit (EPERM although running as root),
// as opposed to a fault of the runtime.
func kernelRefused(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) || (errors.Is(err, syscall.EPERM) && os.Geteuid() == 0)
}

// TestProbeSections attaches programs in kprobe/kretprobe and fentry/fexit
// sections to do_sys_openat2 and checks that both the entry and the return
// program fire for an open by this process. Kernels built without kprobes or
// trampolines refuse the attach; the test then skips with the kernel's
// answer, and fails on any other error.
func TestProbeSections(t *testing.T) {
	needRoot(t)
	for _, obj := range []string{"probe_kprobe.bpf.o", "probe_fentry.bpf.o"} {
		t.Run(strings.TrimSuffix(obj, ".bpf.o"), func(t *testing.T) {
			g := gadget.Gadget{Name: "probe", Object: testObject(t, obj)}
			c := newCollector()
			rt, err := gadget.New(New(Options{}), c)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := rt.Run(ctx, g, gadget.RunOptions{})
				done <- err
			}()
			select {
			case <-c.started:
			case err := <-done:
				if kernelRefused(err) {
					t.Skipf("this kernel refuses %s: %v", obj, err)
				}
				t.Fatalf("run ended before starting: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("gadget did not start within 30s")
			}
			marker := filepath.Join(t.TempDir(), "probe-marker")
			if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if f, err := os.Open(marker); err == nil {
				f.Close()
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("run: %v", err)
			}
			pid := float64(os.Getpid())
			for where, name := range map[float64]string{1: "entry", 2: "return"} {
				got := c.find("probe", func(e map[string]any) bool { return num(e["pid"]) == pid && num(e["where"]) == where })
				if len(got) == 0 {
					t.Errorf("no %s event from pid %d", name, os.Getpid())
				}
			}
		})
	}
}
