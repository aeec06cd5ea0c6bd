package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/queue"
)

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

func (s stateSource) HookSnapshots(string, string) (hookhost.Snapshots, bool) { return nil, false }

func sampleState() debugserver.Dump {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	return debugserver.Dump{
		Time: at,
		Packages: []debugserver.PackageDump{{
			Key: "gadget.trace-exec", Package: "trace-exec", Phase: "Running", Enabled: true, Version: "0.1.0",
			Hooks: []hookhost.HookDump{{Name: "startup.sh", Bindings: []string{"onStartup"}, LastRun: &at, Runs: 1}},
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
	path := filepath.Join(t.TempDir(), "debug.sock")
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
}
