package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// helperEnv makes the test binary a helper process (see runHelper) instead
// of running the tests: the operator side of a hook run that a test can
// kill, or that runs in its own mount namespace.
const helperEnv = "GADGETPM_HOOKS_TEST_HELPER"

// helperSpec is what a helper process runs: each hook of the package in
// Dir, once, through a Runner with the sandbox Mode.
type helperSpec struct {
	Mode  sandbox.Mode
	Hide  []string
	Dir   string
	Hooks []string
	Env   map[string]string
	// Token, when set, is written where a pod's service-account token is
	// (/var/run/secrets/kubernetes.io/serviceaccount/token), on a tmpfs
	// over /run that only the helper's mount namespace sees.
	Token string
}

// helperResult is one run as the helper saw it.
type helperResult struct {
	Hook     string
	ExitCode int
	Err      string
	Stdout   []string
	Stderr   []string
	// ValuesPatch is the values patch read back, as JSON.
	ValuesPatch string
}

// runHelper is the helper process: it prints one helperResult a line.
func runHelper(raw string) int {
	var spec helperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	if spec.Token != "" {
		if err := fakeServiceAccount(spec.Token); err != nil {
			fmt.Fprintln(os.Stderr, "helper: service account:", err)
			return 2
		}
	}
	ctx := context.Background()
	sb, err := sandbox.New(ctx, sandbox.Options{Mode: spec.Mode, Hide: spec.Hide})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	r := NewRunner(RunnerOptions{Sandbox: sb, Env: Env{Package: spec.Env}, Timeout: time.Minute})
	enc := json.NewEncoder(os.Stdout)
	for _, name := range spec.Hooks {
		hooks, err := Load(ctx, spec.Dir, []string{name}, LoadOptions{Package: "test-pkg", PackageKey: "ns.test-pkg"})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		rec := &logRecorder{}
		res, err := r.Run(ctx, hooks[0], RunInput{Binding: "onStartup", Logger: rec.logger()})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		out := helperResult{Hook: name, ExitCode: res.ExitCode}
		if res.ValuesPatch != nil {
			patch, _ := json.Marshal(res.ValuesPatch)
			out.ValuesPatch = string(patch)
		}
		if res.Err != nil {
			out.Err = res.Err.Error()
		}
		for _, e := range rec.output("stdout") {
			out.Stdout = append(out.Stdout, e.msg)
		}
		for _, e := range rec.output("stderr") {
			out.Stderr = append(out.Stderr, e.msg)
		}
		if err := enc.Encode(out); err != nil {
			return 2
		}
	}
	return 0
}

// fakeServiceAccount puts a token where a pod has its own, in this
// process's mount namespace only.
func fakeServiceAccount(token string) error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=755"); err != nil {
		return err
	}
	dir := "/run/secrets/kubernetes.io/serviceaccount"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "token"), []byte(token), 0o644)
}

// helperCommand is the helper process of spec; with ownMountNS it gets
// a mount namespace of its own (needed for spec.Token).
func helperCommand(t *testing.T, spec helperSpec, ownMountNS bool) *exec.Cmd {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	if ownMountNS {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	}
	return cmd
}

// needRoot skips a test of the sandbox when it cannot be made here; CI runs
// as root, where it always can.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the hook sandbox tests need root (CI runs as root)")
		}
		t.Skip("the hook sandbox needs root (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID)")
	}
}

// processesWith lists the PIDs whose command line contains marker.
func processesWith(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// markerName is a process name no other test uses.
func markerName(what string) string {
	return fmt.Sprintf("gadgetpm-test-%s-%d", what, time.Now().UnixNano())
}

// TestHookEscapeAttempts runs hooks that try to get out of their sandbox
// through the real Runner, as root, and checks that each attempt failed or
// was stopped and that the run's log says so. The helper process that runs
// them has a fake service-account token where a pod has its own.
func TestHookEscapeAttempts(t *testing.T) {
	needRoot(t)
	store := t.TempDir()
	outside, err := os.MkdirTemp("/var/tmp", "gadgetpm-escape-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(outside) })
	if err := os.Chmod(outside, 0o1777); err != nil { // writable by anyone, as /var/tmp is
		t.Fatal(err)
	}
	other := filepath.Join(store, "other-package")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "secret.txt"), []byte("other package's file"), 0o644); err != nil {
		t.Fatal(err)
	}
	debugDir := t.TempDir()
	sock := filepath.Join(debugDir, "debug.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// Open to anyone: only the sandbox keeps hooks from it.
	if err := os.Chmod(debugDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	daemon := markerName("daemon")
	t.Cleanup(func() {
		for _, pid := range processesWith(daemon) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	const token = "operator-token-must-not-leak"

	cases := []struct {
		name string
		body string
		// wantFail: the hook's run fails (its attempt errored out).
		wantFail bool
		// wantLog are substrings of the run's stderr lines.
		wantLog []string
		// notOut must appear in no line the hook printed.
		notOut string
		check  func(t *testing.T)
	}{
		{name: "who-am-i", body: `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; grep NoNewPrivs /proc/self/status; ls /proc | grep -c '^[0-9]' >&2
[[ $HOME == "$TMPDIR" ]] && touch "$HOME/.settings" && echo "home is the run's own"`},
		{name: "write-outside", body: `echo escaped > ` + outside + `/escaped`, wantFail: true, wantLog: []string{"Read-only file system"},
			check: func(t *testing.T) {
				if _, err := os.Stat(filepath.Join(outside, "escaped")); err == nil {
					t.Errorf("the hook wrote %s/escaped", outside)
				}
			}},
		{name: "modify-package", body: `echo evil > "$PWD/hooks/data.txt"`, wantFail: true, wantLog: []string{"Read-only file system"}},
		{name: "read-package", body: `cat "$PWD/hooks/data.txt"`},
		{name: "read-token", body: `cat /var/run/secrets/kubernetes.io/serviceaccount/token`, wantFail: true, wantLog: []string{"No such file or directory"}, notOut: token},
		{name: "read-other-package", body: `cat ` + other + `/secret.txt`, wantFail: true, wantLog: []string{"No such file or directory"}, notOut: "other package's file"},
		{name: "connect-debug-socket", body: `curl -sS --max-time 5 --unix-socket ` + sock + ` http://gadgetpm/dump`, wantFail: true, wantLog: []string{"Couldn't connect"}},
		{name: "spawn-daemon", body: `setsid bash -c 'exec -a ` + daemon + ` sleep 1000' </dev/null >/dev/null 2>&1 &
sleep 0.2`, wantLog: []string{"the hook left 1 process(es) running, killed with the run: sleep"},
			check: func(t *testing.T) {
				if pids := processesWith(daemon); len(pids) > 0 {
					t.Errorf("the hook's daemon outlived its run: PIDs %v", pids)
				}
			}},
		{name: "write-run-dir", body: `echo '[{"op":"add","path":"/testPkg/ok","value":true}]' > "$VALUES_JSON_PATCH_PATH"; echo scratch > "$TMPDIR/scratch"`},
	}
	files := map[string]string{"hooks/data.txt": "original\n"}
	var names []string
	for _, c := range cases {
		files["hooks/"+c.name] = bashHook(trivialConfig, c.body)
		names = append(names, c.name)
	}
	names = append(names, "read-package") // after modify-package: still the original
	pkg := filepath.Join(store, "package")
	for name, content := range files {
		p := filepath.Join(pkg, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o755)
		if strings.HasSuffix(name, ".txt") {
			mode = 0o666 // writable by anyone: only the sandbox keeps it intact
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}

	cmd := helperCommand(t, helperSpec{Mode: sandbox.On, Hide: []string{store, debugDir}, Dir: pkg, Hooks: names, Token: token}, true)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	t.Logf("runs:\n%s", out)
	results := map[string][]helperResult{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r helperResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("helper output %q: %v", line, err)
		}
		results[r.Hook] = append(results[r.Hook], r)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runs := results[c.name]
			if len(runs) == 0 {
				t.Fatalf("no run of %s", c.name)
			}
			r := runs[0]
			if failed := r.Err != ""; failed != c.wantFail {
				t.Errorf("run failed = %v (exit %d, %s), want %v\nstdout %q\nstderr %q", failed, r.ExitCode, r.Err, c.wantFail, r.Stdout, r.Stderr)
			}
			stderr := strings.Join(r.Stderr, "\n")
			for _, w := range c.wantLog {
				if !strings.Contains(stderr, w) {
					t.Errorf("the run's log (stderr) lacks %q:\n%s", w, stderr)
				}
			}
			if c.notOut != "" && strings.Contains(strings.Join(append(r.Stdout, r.Stderr...), "\n"), c.notOut) {
				t.Errorf("the hook printed %q", c.notOut)
			}
			if c.check != nil {
				c.check(t)
			}
		})
	}
	if got := results["write-run-dir"][0].ValuesPatch; !strings.Contains(got, `"/testPkg/ok"`) {
		t.Errorf("the values patch the hook wrote into its run directory was read back as %q", got)
	}
	who := results["who-am-i"][0]
	if got := strings.Join(who.Stdout, "\n"); !strings.Contains(got, "uid=65534 gid=65534 groups=65534\n") || !strings.Contains(got, "NoNewPrivs:\t1") || !strings.Contains(got, "home is the run's own") {
		t.Errorf("the hook's identity: %q, want uid, gid and only group 65534, no_new_privs, and HOME its writable TMPDIR", got)
	}
	// The hook's /proc shows its namespace: the init, bash and ls.
	if n, _ := strconv.Atoi(strings.Join(who.Stderr, "")); n == 0 || n > 4 {
		t.Errorf("the hook sees %q processes in /proc, want its own few", who.Stderr)
	}
	for i, r := range results["read-package"] {
		if got := strings.Join(r.Stdout, "\n"); got != "original" || r.Err != "" {
			t.Errorf("run %d of read-package read %q (%s), want the original file", i, got, r.Err)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(pkg, "hooks", "data.txt")); string(data) != "original\n" {
		t.Errorf("the package's file became %q", data)
	}
}

// TestHooksDieWithTheOperator kills the process running a hook (with
// SIGKILL, as the OOM killer or a node drain would) and checks that the
// hook does not live on, with and without the sandbox.
func TestHooksDieWithTheOperator(t *testing.T) {
	needRoot(t)
	for _, mode := range []sandbox.Mode{sandbox.On, sandbox.Off} {
		t.Run(string(mode), func(t *testing.T) {
			marker := markerName("hold-" + string(mode))
			dir := newPackage(t, map[string]string{"hooks/hold": bashHook(trivialConfig, "exec -a "+marker+" sleep 1000")})
			if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := helperCommand(t, helperSpec{Mode: mode, Dir: dir, Hooks: []string{"hold"}}, false)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, pid := range processesWith(marker) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			eventually.True(t, 30*time.Second, "the hook is running", func() bool { return len(processesWith(marker)) == 1 })
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			eventually.True(t, 10*time.Second, "the hook is gone with the process that ran it", func() bool { return len(processesWith(marker)) == 0 })
		})
	}
}
