package ebpfstage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mountChildEnv marks the test binary re-executed in its own mount
// namespace by TestMountsMissingFilesystems.
const mountChildEnv = "GADGETPM_TEST_MOUNT_CHILD"

var pseudoFilesystems = []struct {
	dir   string
	magic int64
}{
	{"/sys/kernel/tracing", unix.TRACEFS_MAGIC},
	{"/sys/fs/bpf", unix.BPF_FS_MAGIC},
}

func mountedAs(dir string, magic int64) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Type) == magic, nil
}

// TestMountsMissingFilesystems unmounts tracefs and bpffs in a private mount
// namespace of a child process, runs the runtime's mount code there, and
// checks that both are mounted again, with the right filesystem type. The
// test's own namespace is left alone.
func TestMountsMissingFilesystems(t *testing.T) {
	if os.Getenv(mountChildEnv) == "1" {
		mountChild(t)
		return
	}
	needRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMountsMissingFilesystems$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mountChildEnv+"=1")
	// Go makes / recursively private in the child after unsharing, so
	// nothing it mounts or unmounts propagates back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil && errors.Is(err, syscall.EPERM) {
		t.Skipf("the kernel refuses a new mount namespace: %v", err)
	}
	if m := regexp.MustCompile(`(?m)^\s+mount_test\.go:\d+: (kernel refuses: .*)$`).FindSubmatch(out); m != nil && strings.Contains(string(out), "--- SKIP") {
		t.Skipf("%s", m[1])
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: TestMountsMissingFilesystems") {
		t.Fatalf("child in a new mount namespace: %v\n%s", err, out)
	}
	for _, fs := range pseudoFilesystems {
		if ok, err := mountedAs(fs.dir, fs.magic); err != nil || !ok {
			t.Errorf("%s in the test's own namespace: mounted=%v %v", fs.dir, ok, err)
		}
	}
}

func mountChild(t *testing.T) {
	for _, fs := range pseudoFilesystems {
		ok, err := mountedAs(fs.dir, fs.magic)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		if err := unix.Unmount(fs.dir, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EPERM) {
				t.Skipf("kernel refuses: umount %s in a new mount namespace: %v", fs.dir, err)
			}
			t.Fatalf("umount %s: %v", fs.dir, err)
		}
		if ok, err := mountedAs(fs.dir, fs.magic); err != nil || ok {
			t.Fatalf("%s still mounted after umount (%v)", fs.dir, err)
		}
	}
	if err := mountFilesystems(); err != nil {
		t.Fatalf("mountFilesystems: %v", err)
	}
	for _, fs := range pseudoFilesystems {
		if ok, err := mountedAs(fs.dir, fs.magic); err != nil || !ok {
			t.Errorf("%s not mounted by mountFilesystems (%v)", fs.dir, err)
		}
	}
	// a second call finds both mounted and leaves them alone
	if err := mountFilesystems(); err != nil {
		t.Errorf("mountFilesystems with both mounted: %v", err)
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, fs := range pseudoFilesystems {
		if n := strings.Count(string(mounts), " "+fs.dir+" "); n != 1 {
			t.Errorf("%s mounted %d times, want once:\n%s", fs.dir, n, mounts)
		}
	}
}
