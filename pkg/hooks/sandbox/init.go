package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitName is argv[0] of the sandbox init; with the spec in its
// environment it makes a binary run the init instead of its main.
const InitName = "gadgetpm-hook-sandbox"

const (
	envSpec = "GADGETPM_HOOK_SANDBOX_SPEC"
	// exitSetup is the init's status when it could not build the sandbox
	// (as runc's 125: the command never ran).
	exitSetup = 125
	// Exit statuses of a hook that could not be executed, as a shell's.
	exitNotExecutable = 126
	exitNotFound      = 127
	// hideOptions make a hidden path an empty, tiny, read-only directory.
	hideOptions = "size=16k,nr_inodes=64,mode=755"
)

// initSpec is what the operator hands the init, as JSON in envSpec: the
// command (its Hide covered by tmpfs; its Package, read-only, and RunDir,
// writable, visible, re-created below a hidden path when they were under
// one) and the user to run it as.
type initSpec struct {
	request
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Probe builds the sandbox and switches to the user, and runs nothing.
	Probe bool `json:"probe,omitempty"`
}

// init runs the sandbox init when this process is one: before main (or a
// test binary's TestMain), and before the packages sorted after this one
// are initialised, so it costs little and no binary that can start a
// sandbox can fail to answer it.
func init() {
	if len(os.Args) == 0 || os.Args[0] != InitName {
		return
	}
	raw, ok := os.LookupEnv(envSpec)
	if !ok {
		return
	}
	os.Exit(runInit(raw, os.Stderr))
}

// runInit is PID 1 of the hook's namespaces. Its status is the hook's, or
// exitSetup with the reason on stderr.
func runInit(raw string, stderr io.Writer) int {
	// no_new_privs and the hook's parent-death signal are attributes of
	// this thread; the hook is forked from it and it lives as long as the
	// process.
	runtime.LockOSThread()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "hook sandbox: "+format+"\n", args...)
		return exitSetup
	}
	var spec initSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return fail("read the run's spec: %v", err)
	}
	if err := mountSandbox(spec); err != nil {
		return fail("%v (the operator needs CAP_SYS_ADMIN to build the hook sandbox)", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail("set no_new_privs: %v", err)
	}
	if spec.Probe {
		// The hook's switch happens in the forked child; the probe makes
		// the same calls here, for every thread.
		if err := syscall.Setgroups(nil); err != nil {
			return fail("drop supplementary groups: %v (the operator needs CAP_SETGID)", err)
		}
		if err := syscall.Setgid(int(spec.GID)); err != nil {
			return fail("switch to gid %d: %v (the operator needs CAP_SETGID)", spec.GID, err)
		}
		if err := syscall.Setuid(int(spec.UID)); err != nil {
			return fail("switch to uid %d: %v (the operator needs CAP_SETUID)", spec.UID, err)
		}
		return 0
	}
	return superviseHook(spec, stderr)
}

// superviseHook forks the hook and stays its parent, rather than exec'ing
// it: PID 1 must reap every orphan of the namespace (a hook's shell does
// not), and only a parent that outlives the hook can say what it left
// running.
func superviseHook(spec initSpec, stderr io.Writer) int {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir, cmd.Env = spec.Dir, spec.Env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	// The signals an operator or a runtime may send to stop or poke it.
	forwarded := []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
	sigs := make(chan os.Signal, len(forwarded))
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		code := exitNotExecutable
		if errors.Is(err, os.ErrNotExist) {
			code = exitNotFound
		}
		hint := ""
		if errors.Is(err, os.ErrPermission) {
			hint = fmt.Sprintf(" (as uid %d: the hook and its package directory must be readable and executable by the hook user; switching to it needs CAP_SETUID and CAP_SETGID)", spec.UID)
		}
		fmt.Fprintf(stderr, "hook sandbox: start the hook: %v%s\n", err, hint)
		return code
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	ws, err := reap(cmd.Process.Pid)
	close(done)
	wg.Wait()
	if err != nil {
		fmt.Fprintf(stderr, "hook sandbox: wait for the hook: %v\n", err)
		return exitSetup
	}
	if left := leftovers(); len(left) > 0 {
		fmt.Fprintf(stderr, "hook sandbox: the hook left %d process(es) running, killed with the run: %s\n", len(left), strings.Join(left, ", "))
	}
	if ws.Signaled() {
		fmt.Fprintf(stderr, "hook sandbox: the hook was killed by signal %d (%v)\n", int(ws.Signal()), ws.Signal())
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// reap waits for every child of the namespace, as its init must, until
// the hook itself exits.
func reap(hook int) (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return ws, err
		}
		if pid == hook {
			return ws, nil
		}
	}
}

// leftovers names the processes of the namespace other than the init:
// what the hook left behind ("sleep (pid 7)").
func leftovers() []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		out = append(out, fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), pid))
	}
	sort.Strings(out)
	return out
}

// mountSandbox builds the hook's view of the filesystem in the new mount
// namespace: a fresh /proc, the hidden paths covered, the hook's package
// and run directory shown again, and every mount but the run directory
// read-only.
func mountSandbox(spec initSpec) error {
	// Nothing below may reach the operator's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	type keep struct {
		path     string
		fd       int
		writable bool
	}
	var keeps []keep
	defer func() {
		for _, k := range keeps {
			_ = unix.Close(k.fd)
		}
	}()
	// Handles taken before anything covers them: the bind mounts below
	// come from them.
	for _, l := range []struct {
		path     string
		writable bool
	}{{spec.Package, false}, {spec.RunDir, true}} {
		if l.path == "" {
			continue
		}
		real, err := filepath.EvalSymlinks(l.path)
		if err != nil {
			return fmt.Errorf("keep %s visible: %w", l.path, err)
		}
		fd, err := unix.Open(real, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("keep %s visible: %w", l.path, err)
		}
		keeps = append(keeps, keep{path: real, fd: fd, writable: l.writable})
	}
	var hidden []string
	for _, p := range spec.Hide {
		real, err := filepath.EvalSymlinks(p)
		if err != nil || real == "/" {
			continue // nothing there to hide (or everything: never cover the root)
		}
		hidden = append(hidden, real)
	}
	// A fresh /proc shows only the namespace's processes.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, p := range hidden {
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, hideOptions); err != nil {
			return fmt.Errorf("hide %s: %w", p, err)
		}
	}
	writable := map[string]bool{}
	for _, k := range keeps {
		if _, err := os.Stat(k.path); err != nil {
			if !under(k.path, hidden) {
				return fmt.Errorf("keep %s visible: %w", k.path, err)
			}
			if err := os.MkdirAll(k.path, 0o755); err != nil {
				return fmt.Errorf("keep %s visible: %w", k.path, err)
			}
		}
		// Its own mount, also when nothing hid it: the read-only pass
		// below then treats it by itself.
		if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(k.fd), k.path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("keep %s visible: %w", k.path, err)
		}
		writable[k.path] = writable[k.path] || k.writable
	}
	return readOnlyMounts(writable)
}

// readOnlyMounts remounts every mount of the namespace read-only, keeping
// its nosuid/nodev/noexec/atime flags, except the writable ones.
func readOnlyMounts(writable map[string]bool) error {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		// The old /proc's submounts are below the fresh /proc now, and
		// the run directory stays writable.
		if (mp != "/proc" && strings.HasPrefix(mp, "/proc/")) || writable[mp] {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(mp, &st); err != nil {
			continue // covered by a later mount: not reachable
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		for _, m := range []struct{ st, ms uintptr }{
			{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
			{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
		} {
			if uintptr(st.Flags)&m.st != 0 {
				flags |= m.ms
			}
		}
		if err := unix.Mount("", mp, "", flags, ""); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				continue // covered by a later mount: the path is not a mount point here
			}
			return fmt.Errorf("make %s read-only: %w", mp, err)
		}
	}
	return nil
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// under reports whether p is one of dirs or below one.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
