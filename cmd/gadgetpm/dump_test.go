package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/dump"
	"github.com/gadgetpm/gadgetpm/queue"
)

// mainArgsEnv, when set, makes the test binary run gadgetpm's main with
// these arguments (one per line) instead of the tests, so a test can run
// the command as another user.
const mainArgsEnv = "GADGETPM_TEST_MAIN_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(mainArgsEnv); ok {
		os.Args = append([]string{"gadgetpm"}, strings.Split(args, "\n")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stateSource is a fixed operator state behind a real debug server.
type stateSource struct{ dump debugserver.Dump }

func (s stateSource) Dump() debugserver.Dump { return s.dump }

func (s stateSource) Package(key string) (debugserver.PackageDump, bool) {
	for _, p := range s.dump.Packages {
		if p.Key == key {
			return p, true
		}
	}
	return debugserver.PackageDump{}, false
}

func (s stateSource) HookSnapshots(string, string) (dump.Snapshots, bool) { return nil, false }

func sampleState() debugserver.Dump {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	return debugserver.Dump{
		Time: at,
		Packages: []debugserver.PackageDump{{
			Key: "gadget.trace-exec", Package: "trace-exec", Phase: "Running", Enabled: true, Version: "0.1.0",
			Hooks: []dump.Hook{{Name: "startup.sh", Bindings: []string{"onStartup"}, LastRun: &at, Runs: 1}},
		}},
		Queues: queue.Dump{Queues: []queue.QueueDump{
			{Name: "gadget.trace-exec", Length: 2, Running: &queue.RunningTask{Name: "HelmUpgrade", Since: at, Attempt: 3},
				Pending: []queue.PendingTask{{Name: "a", EnqueuedAt: at}, {Name: "b", EnqueuedAt: at}}},
			{Name: "gadget.trace-exec/watch", Failed: []queue.FailedTask{{Name: "HookRun", EnqueuedAt: at, FailedAt: at, Attempts: 5, Error: "exit status 1"}}},
			{Name: "main", Running: &queue.RunningTask{Name: "Sync", Since: at, Attempt: 1}},
		}},
	}
}

// serveState runs a debug server for the test's lifetime and returns its
// socket.
func serveState(t *testing.T, d debugserver.Dump) string {
	t.Helper()
	return serveStateAt(t, d, filepath.Join(t.TempDir(), "debug.sock"))
}

// serveStateAt is serveState on the socket path.
func serveStateAt(t *testing.T, d debugserver.Dump, path string) string {
	t.Helper()
	srv, err := debugserver.New(debugserver.Options{Path: path, Source: stateSource{d}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("debug server: %v", err)
		}
	})
	eventually.NoError(t, 10*time.Second, "the debug server on "+path+" to answer", func() error {
		c, err := net.Dial("unix", path)
		if err == nil {
			_ = c.Close()
		}
		return err
	})
	return path
}

func TestDumpCommand(t *testing.T) {
	want := sampleState()
	sock := serveState(t, want)

	t.Run("yaml by flag", func(t *testing.T) {
		out, err := run(t, "dump", "--socket", sock)
		if err != nil {
			t.Fatal(err)
		}
		var got debugserver.Dump
		if err := sigsyaml.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("output is not the dump in YAML: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("dump differs:\n got %+v\nwant %+v", got, want)
		}
		if !strings.Contains(out, "key: gadget.trace-exec\n") {
			t.Fatalf("not block YAML:\n%s", out)
		}
	})
	t.Run("json by environment", func(t *testing.T) {
		t.Setenv(debugSocketEnv, sock)
		out, err := run(t, "dump", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var got debugserver.Dump
		if err := json.Unmarshal([]byte(out), &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("json dump: %v\n%s", err, out)
		}
	})
	t.Run("flag wins over environment", func(t *testing.T) {
		t.Setenv(debugSocketEnv, filepath.Join(t.TempDir(), "nothing.sock"))
		if _, err := run(t, "dump", "--socket", sock); err != nil {
			t.Fatal(err)
		}
	})
}

func TestQueueListCommand(t *testing.T) {
	want := sampleState()
	sock := serveState(t, want)

	out, err := run(t, "queue", "list", "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	table := "" +
		"NAME                      LENGTH   RUNNING                   FAILED\n" +
		"gadget.trace-exec         2        HelmUpgrade (attempt 3)   0\n" +
		"gadget.trace-exec/watch   0        <none>                    1\n" +
		"main                      0        Sync                      0\n"
	if out != table {
		t.Fatalf("table:\n%s\nwant:\n%s", out, table)
	}

	out, err = run(t, "queue", "list", "--socket", sock, "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got queue.Dump
	if err := sigsyaml.Unmarshal([]byte(out), &got); err != nil || !reflect.DeepEqual(got, want.Queues) {
		t.Fatalf("yaml queues: %v\n%s", err, out)
	}
	out, err = run(t, "queue", "list", "--socket", sock, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	got = queue.Dump{}
	if err := json.Unmarshal([]byte(out), &got); err != nil || !reflect.DeepEqual(got, want.Queues) {
		t.Fatalf("json queues: %v\n%s", err, out)
	}

	empty := serveState(t, debugserver.Dump{})
	out, err = run(t, "queue", "list", "--socket", empty)
	if err != nil || out != "No queues.\n" {
		t.Fatalf("no queues: %v %q", err, out)
	}
}

func TestDebugCommandsBadInput(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	_ = ln.Close()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(debugSocketEnv, "")

	notRunning := []string{"no operator is running at", "make run", "--socket"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"dump, nothing there", []string{"dump", "--socket", missing}, append([]string{missing}, notRunning...)},
		{"dump, stale socket", []string{"dump", "--socket", stale}, append([]string{stale}, notRunning...)},
		{"queue list, nothing there", []string{"queue", "list", "--socket", missing}, append([]string{missing}, notRunning...)},
		{"dump, not a socket", []string{"dump", "--socket", regular}, []string{regular, "--socket"}},
		{"dump, bad format", []string{"dump", "-o", "table"}, []string{`unknown output format "table"`, "yaml or json"}},
		{"queue list, bad format", []string{"queue", "list", "-o", "wide"}, []string{`unknown output format "wide"`, "table, yaml or json"}},
		{"dump, extra argument", []string{"dump", "now"}, []string{"unknown command"}},
		{"queue, no subcommand argument", []string{"queue", "list", "x"}, []string{"unknown command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	t.Run("default socket", func(t *testing.T) {
		if _, err := os.Stat(debugserver.DefaultSocket); err == nil {
			t.Skipf("an operator may be running at %s", debugserver.DefaultSocket)
		}
		_, err := run(t, "dump")
		if err == nil || !strings.Contains(err.Error(), debugserver.DefaultSocket) {
			t.Fatalf("error %v does not name the default socket", err)
		}
	})
}

func TestDebugCommandsHelp(t *testing.T) {
	for _, args := range [][]string{{"dump", "--help"}, {"queue", "list", "--help"}} {
		out, err := run(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"Examples:", "--socket", "--output", debugSocketEnv} {
			if !strings.Contains(out, w) {
				t.Errorf("%v lacks %q", args, w)
			}
		}
	}
	// Who may read the socket, and what the dump hides.
	out, err := run(t, "dump", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"root", "own uid", "SO_PEERCRED", "permission denied", `"x-secret": true`, "password", "<redacted>"} {
		if !strings.Contains(out, w) {
			t.Errorf("dump --help lacks %q:\n%s", w, out)
		}
	}
}

// TestDumpCommandRefusedUID: run as a uid the operator does not allow,
// `gadgetpm dump` fails with the operator's refusal, which says whom to
// run as. The socket's mode is opened to everyone, so that only the
// operator's peer check can refuse.
func TestDumpCommandRefusedUID(t *testing.T) {
	testroot.Require(t, "running the command as another uid")
	dir, err := os.MkdirTemp("", "gadgetpm-dump-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of the test binary every uid may run.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gadgetpm.test")
	if err := copyExecutable(self, bin); err != nil {
		t.Fatal(err)
	}
	sock := serveStateAt(t, sampleState(), filepath.Join(dir, "debug.sock"))
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{mainArgsEnv + "=dump\n--socket\n" + sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	want := fmt.Sprintf("Error: gadgetpm dump: permission denied: uid 4242 is not allowed on %s; run as root\n", sock)
	if err == nil || string(out) != want {
		t.Fatalf("gadgetpm dump as uid 4242: %v\n%q\nwant it to fail with\n%q", err, out, want)
	}
	// Root reads it.
	if _, err := run(t, "dump", "--socket", sock); err != nil {
		t.Fatalf("gadgetpm dump as root: %v", err)
	}
}

func copyExecutable(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
