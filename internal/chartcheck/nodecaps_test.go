package chartcheck_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

// capBPF is CAP_BPF's number; kernels before 5.8 stop below it.
const capBPF = 39

// withCaps returns argv run as root with only caps (bounding, permitted
// and effective sets), as a container runtime starts a uid-0 container
// whose securityContext drops ALL and adds caps.
func withCaps(caps []corev1.Capability, argv ...string) *exec.Cmd {
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(string(c))
	}
	return exec.Command("setpriv", append([]string{"--bounding-set", set, "--inh-caps", "-all", "--"}, argv...)...)
}

// kernelBefore reports whether the running kernel is older than
// major.minor.
func kernelBefore(t *testing.T, major, minor int) bool {
	t.Helper()
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatalf("read the kernel's release: %v", err)
	}
	var maj, min int
	if _, err := fmt.Sscanf(string(rel), "%d.%d", &maj, &min); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return maj < major || maj == major && min < minor
}

// without returns caps less drop.
func without(caps []corev1.Capability, drop corev1.Capability) []corev1.Capability {
	var out []corev1.Capability
	for _, c := range caps {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}

// TestNodeCapabilitiesRunAGadget runs the node role's gadget runtime (the
// eBPF loader and the enricher, through `gadgetpm gadget run`) on this
// kernel with exactly the capabilities the chart gives the node container,
// and no others: trace-exec loads, attaches and reports a program exec'd by
// another user, and the enricher may read the mount namespace of a process
// with capabilities the node role lacks (/proc/<pid>/ns/mnt).
// Without CAP_BPF the gadget does not load, and without CAP_SYS_PTRACE
// the namespace cannot be read: each capability is needed, not just
// sufficient. Kernels before 5.11 get CAP_SYS_RESOURCE too, as the
// install docs say.
func TestNodeCapabilitiesRunAGadget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("loading eBPF programs needs root: run the tests as root, as CI does")
	}
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatalf("read the kernel's last capability: %v", err)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(last))); err != nil || n < capBPF {
		t.Skipf("this kernel has no CAP_BPF (cap_last_cap %s): before 5.8 the node role needs node.extraCapabilities=[SYS_ADMIN]", strings.TrimSpace(string(last)))
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv is not on PATH: apt-get install util-linux")
	}

	o := mustRender(t, "gadgetpm", nil)
	if len(o.ds) != 1 {
		t.Fatalf("rendered %d DaemonSets, want the node role's", len(o.ds))
	}
	sc := o.ds[0].Spec.Template.Spec.Containers[0].SecurityContext
	if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) == 0 {
		t.Fatalf("the node container's securityContext %+v names no capabilities", sc)
	}
	caps := sc.Capabilities.Add
	if kernelBefore(t, 5, 11) {
		// What docs/install.md tells these kernels' users to add.
		caps = append(caps, "SYS_RESOURCE")
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "gadgetpm")
	build := exec.Command("go", testenv.GoBuildArgs(bin, "./cmd/gadgetpm")...)
	build.Dir = env.RepoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gadgetpm: %v\n%s", err, out)
	}
	// The marker program lives where another user may run it.
	progDir, err := os.MkdirTemp("", "gpmcaps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(progDir) })
	marker := fmt.Sprintf("gpmcaps%d", os.Getpid())
	prog := filepath.Join(progDir, marker)
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(progDir, 0o755); err != nil {
		t.Fatal(err)
	}

	runGadget := func(caps []corev1.Capability) (string, error) {
		cmd := withCaps(caps, bin, "gadget", "run", filepath.Join(env.RepoRoot, "charts", "packages", "trace-exec"),
			"--filter", "comm=="+marker, "--max-events", "1", "--timeout", "60s")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			return "", err
		}
		// Exec the marker as another user until the gadget has seen it.
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_ = exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", prog).Run()
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
		err := cmd.Wait()
		stop()
		wg.Wait()
		if err != nil {
			return stdout.String(), fmt.Errorf("%w: %s", err, stderr.String())
		}
		return stdout.String(), nil
	}

	out, err := runGadget(caps)
	if err != nil {
		t.Fatalf("gadgetpm gadget run with the node role's capabilities %v: %v", caps, err)
	}
	if !strings.Contains(out, `"comm":"`+marker+`"`) || !strings.Contains(out, `"uid":65534`) {
		t.Errorf("with the node role's capabilities %v trace-exec did not report %s exec'd by uid 65534:\n%s", caps, marker, out)
	}
	if _, err := runGadget(without(caps, "BPF")); err == nil {
		t.Errorf("trace-exec ran without CAP_BPF too (capabilities %v): the test cannot tell the capabilities apart", without(caps, "BPF"))
	}

	// A process with capabilities the node role lacks, as every
	// container's processes and the host's daemons have.
	target := exec.Command("sleep", "300")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = target.Process.Kill()
		_ = target.Wait()
	})
	nsLink := fmt.Sprintf("/proc/%d/ns/mnt", target.Process.Pid)
	readNS := func(caps []corev1.Capability) error {
		out, err := withCaps(caps, "readlink", nsLink).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "mnt:[") {
			return fmt.Errorf("readlink: %v: %q", err, out)
		}
		return nil
	}
	if err := readNS(caps); err != nil {
		t.Errorf("with the node role's capabilities %v the enricher cannot read %s of a root process: %v", caps, nsLink, err)
	}
	if err := readNS(without(caps, "SYS_PTRACE")); err == nil {
		t.Errorf("%s is readable without CAP_SYS_PTRACE too: the chart would not need it", nsLink)
	}
}
