package hooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// startSandboxServer serves hook runs on a socket in a temporary
// directory until the test ends.
func startSandboxServer(t *testing.T, allow []uint32) string {
	t.Helper()
	sb, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.On})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "sandbox.sock")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		errc <- sandbox.Serve(ctx, sb, sandbox.ServerOptions{Socket: socket, AllowUIDs: allow})
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-errc; err != nil {
			t.Errorf("sandbox server: %v", err)
		}
	})
	eventually.NoError(t, 10*time.Second, "the sandbox server answers", func() error {
		_, err := sandbox.NewRemote(socket, nil)
		return err
	})
	return socket
}

// TestRemoteSandbox runs hooks through a sandbox server on a real unix
// socket, as an operator without privileges does with
// --hook-sandbox-socket: output streamed back, exit status, results read
// back, the sandbox applied, the run killed when the operator stops
// waiting, and clients the server does not allow refused.
func TestRemoteSandbox(t *testing.T) {
	needRoot(t)
	socket := startSandboxServer(t, nil)
	remote, err := sandbox.NewRemote(socket, nil)
	if err != nil {
		t.Fatal(err)
	}
	marker := markerName("remote")
	dir := newPackage(t, map[string]string{
		"hooks/ok": bashHook(trivialConfig, `echo "uid $(id -u)"; echo to-stderr >&2
echo '[{"op":"add","path":"/testPkg/remote","value":true}]' > "$VALUES_JSON_PATCH_PATH"
touch "$PWD/hooks/ok" || echo "package read-only" >&2`),
		"hooks/fail": bashHook(trivialConfig, `echo "broken on purpose" >&2; exit 3`),
		"hooks/hold": bashHook(trivialConfig, "exec -a "+marker+" sleep 1000"),
	})
	r := NewRunner(RunnerOptions{Sandbox: remote})
	run := func(ctx context.Context, name string) (*RunResult, *logRecorder, error) {
		rec := &logRecorder{}
		res, err := r.Run(ctx, loadHook(t, dir, name), RunInput{Binding: "onStartup", Logger: rec.logger()})
		return res, rec, err
	}

	res, rec, err := run(context.Background(), "ok")
	if err != nil || res.Err != nil || res.ExitCode != 0 {
		t.Fatalf("ok: %v, %+v", err, res)
	}
	var stdout, stderr []string
	for _, e := range rec.output("stdout") {
		stdout = append(stdout, e.msg)
	}
	for _, e := range rec.output("stderr") {
		stderr = append(stderr, e.msg)
	}
	if strings.Join(stdout, "|") != "uid 65534" || !strings.Contains(strings.Join(stderr, "|"), "to-stderr") || !strings.Contains(strings.Join(stderr, "|"), "package read-only") {
		t.Errorf("ok printed stdout %q, stderr %q; want it sandboxed as 65534 with both streams logged", stdout, stderr)
	}
	if len(res.ValuesPatch) != 1 {
		t.Errorf("values patch read back: %v", res.ValuesPatch)
	}

	res, _, err = run(context.Background(), "fail")
	if err != nil || res.ExitCode != 3 || res.Err == nil || !strings.Contains(res.Err.Error(), "exit status 3: broken on purpose") {
		t.Errorf("fail: %v, exit %d, %v; want exit 3 with its stderr", err, res.ExitCode, res.Err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *RunResult, 1)
	go func() {
		res, _, _ := run(ctx, "hold")
		done <- res
	}()
	eventually.True(t, 30*time.Second, "the held hook is running", func() bool { return len(processesWith(marker)) == 1 })
	cancel()
	select {
	case res := <-done:
		if res == nil || res.Err == nil || !errors.Is(res.Err, context.Canceled) {
			t.Errorf("cancelled run: %+v", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the cancelled run did not return")
	}
	eventually.True(t, 10*time.Second, "the held hook is killed with its connection", func() bool { return len(processesWith(marker)) == 0 })

	// A run directory the client does not own is never handed to the
	// hook user (the server would give away someone else's tree).
	foreign := t.TempDir()
	if err := os.Chown(foreign, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Launch(context.Background(), sandbox.Cmd{Path: "/bin/true", Dir: "/", RunDir: foreign}); err == nil || !strings.Contains(err.Error(), "want a directory of uid 0, the client's own") {
		t.Errorf("run with a foreign run directory: %v", err)
	}
	if fi, err := os.Stat(foreign); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 4242 {
		t.Errorf("the foreign run directory changed hands: %v", err)
	}

	// A server that serves another uid only.
	other, err := sandbox.NewRemote(startSandboxServer(t, []uint32{4242}), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewRunner(RunnerOptions{Sandbox: other}).Run(context.Background(), loadHook(t, dir, "ok"), RunInput{Binding: "onStartup"})
	if err == nil || !strings.Contains(err.Error(), "uid 0 may not run hooks through this server") {
		t.Errorf("run through a server that does not allow uid 0: %v", err)
	}
}
