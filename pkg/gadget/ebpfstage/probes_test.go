package ebpfstage

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// kernelConfig reads the running kernel's build configuration from
// /proc/config.gz or /boot/config-$(uname -r): option -> "y", "m", a value,
// or "n" for "# CONFIG_X is not set". It returns where it read it.
func kernelConfig() (map[string]string, string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, "", fmt.Errorf("uname: %w", err)
	}
	boot := "/boot/config-" + unix.ByteSliceToString(uts.Release[:])
	var errs []error
	for _, p := range []string{"/proc/config.gz", boot} {
		f, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer f.Close()
		var r io.Reader = f
		if strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", p, err)
			}
			r = zr
		}
		cfg := map[string]string{}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			if k, ok := strings.CutPrefix(line, "# "); ok {
				if k, ok := strings.CutSuffix(k, " is not set"); ok {
					cfg[k] = "n"
				}
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				cfg[k] = v
			}
		}
		if err := sc.Err(); err != nil {
			return nil, "", fmt.Errorf("read %s: %w", p, err)
		}
		return cfg, p, nil
	}
	return nil, "", fmt.Errorf("kernel configuration: %w", errors.Join(errs...))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// kprobesAbsent reports why this kernel has no kprobes, from its
// configuration and the interfaces kprobes attach through, or "" when it
// should have them.
func kprobesAbsent(cfg map[string]string, cfgSrc string) string {
	if cfg["CONFIG_KPROBES"] == "n" {
		return cfgSrc + " says # CONFIG_KPROBES is not set"
	}
	if !exists(kprobePMU) && !exists(kprobeEvents) {
		return fmt.Sprintf("neither %s nor %s exists", kprobePMU, kprobeEvents)
	}
	return ""
}

// fentryRefused reports why this kernel refuses fentry/fexit programs, or ""
// when it should load them and err is the runtime's fault. err is what the
// run returned. A kernel without BPF trampolines
// (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS) or BTF cannot have them; a
// kernel with both may still refuse them with EPERM as root (a lockdown or
// security policy), which counts only when cilium/ebpf's own probe, which
// loads an fentry program on bpf_init outside the runtime, gets the same
// answer.
func fentryRefused(cfg map[string]string, cfgSrc string, err error) string {
	const direct = "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"
	if cfg[direct] != "y" {
		return fmt.Sprintf("%s has %s=%q: no BPF trampolines (%v)", cfgSrc, direct, cfg[direct], err)
	}
	if !exists("/sys/kernel/btf/vmlinux") {
		return fmt.Sprintf("no /sys/kernel/btf/vmlinux: no kernel BTF to attach by (%v)", err)
	}
	if !errors.Is(err, syscall.EPERM) || os.Geteuid() != 0 {
		return ""
	}
	probe := features.HaveProgramType(ebpf.Tracing)
	if probe == nil || !errors.Is(probe, syscall.EPERM) {
		return ""
	}
	facts := fmt.Sprintf("%s has %s=y and /sys/kernel/btf/vmlinux exists, but the kernel answers EPERM to root for every fentry program (the runtime: %v; cilium/ebpf's probe: %v)", cfgSrc, direct, err, probe)
	if _, ferr := os.ReadFile("/sys/kernel/tracing/available_filter_functions"); ferr != nil {
		facts += "; reading available_filter_functions: " + ferr.Error()
	}
	return facts
}

// TestProbeSections checks that programs in each attachable section kind
// fire: kprobe/kretprobe and fentry/fexit on do_sys_openat2 (an entry and a
// return event for an open by this process), raw_tracepoint on
// sched_process_exit (an event for a child that exits). A kernel built
// without kprobes, or one that refuses fentry programs whatever loads them
// (see fentryRefused), skips that case with the facts; every other error
// fails, as does a kernel that should refuse but does not and then shows no
// events.
func TestProbeSections(t *testing.T) {
	needRoot(t)
	cfg, cfgSrc, cfgErr := kernelConfig()
	openMarker := func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "probe-marker")
		if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(marker)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	entryAndReturn := func(t *testing.T, c *collector, _ int) {
		pid := float64(os.Getpid())
		for where, name := range map[float64]string{1: "entry", 2: "return"} {
			if got := c.find("probe", func(e map[string]any) bool { return num(e["pid"]) == pid && num(e["where"]) == where }); len(got) == 0 {
				t.Errorf("no %s event from pid %d", name, os.Getpid())
			}
		}
	}
	tests := []struct {
		obj string
		// refused says why the kernel may refuse this object, given the
		// run's error; "" means the error is a failure
		refused func(t *testing.T, err error) string
		// trigger causes the events and returns a pid for check
		trigger func(t *testing.T) int
		check   func(t *testing.T, c *collector, pid int)
	}{
		{
			obj: "probe_kprobe.bpf.o",
			refused: func(t *testing.T, err error) string {
				if cfgErr != nil {
					t.Fatalf("cannot tell whether this kernel has kprobes: %v (run: %v)", cfgErr, err)
				}
				if !errors.Is(err, ebpf.ErrNotSupported) {
					return ""
				}
				return kprobesAbsent(cfg, cfgSrc)
			},
			trigger: func(t *testing.T) int { openMarker(t); return os.Getpid() },
			check:   entryAndReturn,
		},
		{
			obj: "probe_fentry.bpf.o",
			refused: func(t *testing.T, err error) string {
				if cfgErr != nil {
					t.Fatalf("cannot tell whether this kernel has BPF trampolines: %v (run: %v)", cfgErr, err)
				}
				return fentryRefused(cfg, cfgSrc, err)
			},
			trigger: func(t *testing.T) int { openMarker(t); return os.Getpid() },
			check:   entryAndReturn,
		},
		{
			obj:     "raw_tp_exit.bpf.o",
			refused: func(*testing.T, error) string { return "" },
			trigger: func(t *testing.T) int {
				cmd := exec.Command("/bin/true")
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
				return cmd.Process.Pid
			},
			check: func(t *testing.T, c *collector, pid int) {
				got := c.find("exits", func(e map[string]any) bool { return int(num(e["pid"])) == pid })
				if len(got) != 1 || int(num(got[0]["tid"])) != pid {
					t.Errorf("raw_tracepoint/sched_process_exit: events of the exited child %d: %v, want one with tid %d", pid, got, pid)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.obj, ".bpf.o"), func(t *testing.T) {
			defer checkNoLeaks(t)()
			g := gadget.Gadget{Name: "probe", Object: testObject(t, tt.obj)}
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
				if why := tt.refused(t, err); why != "" {
					t.Skipf("this kernel refuses %s: %s", tt.obj, why)
				}
				t.Fatalf("run ended before starting: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("gadget did not start within 30s")
			}
			pid := tt.trigger(t)
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("run: %v", err)
			}
			tt.check(t, c, pid)
		})
	}
}
