package hooks

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

var (
	env *testenv.Env
	// goHook is the compiled testdata/gohook binary.
	goHook string
)

// TestMain builds the Go test hook, then starts the control plane. It does
// not use testenv.Main so the hook's build directory is removed afterwards.
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if spec, ok := os.LookupEnv(helperEnv); ok {
		return runHelper(spec)
	}
	dir, err := os.MkdirTemp("", "gadgetpm-gohook-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "create build dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	goHook = filepath.Join(dir, "gohook")
	build := exec.Command("go", testenv.GoBuildArgs(goHook, "./testdata/gohook")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build testdata/gohook:", err)
		return 1
	}
	e, err := testenv.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}
	env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stop control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// newPackage writes a package directory: files maps paths (relative to the
// package root) to contents; paths under hooks/ without ".lib" are made
// executable.
func newPackage(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "hooks/") && !strings.HasSuffix(name, ".lib") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadHook loads one hook of the package in dir.
func loadHook(t testing.TB, dir, name string) *Hook {
	t.Helper()
	hooks, err := Load(context.Background(), dir, []string{name}, LoadOptions{Package: "test-pkg", PackageKey: "ns.test-pkg"})
	if err != nil {
		t.Fatalf("load hook %s: %v", name, err)
	}
	return hooks[0]
}

// bashHook is a hook script: config is printed for --config, body runs
// otherwise.
func bashHook(config, body string) string {
	return "#!/usr/bin/env bash\nset -euo pipefail\nif [[ ${1:-} == --config ]]; then\ncat <<'CONFIG'\n" + config + "\nCONFIG\nexit 0\nfi\n" + body + "\n"
}

// logEntry is one recorded log call.
type logEntry struct {
	msg string
	kv  map[string]any
	err error
}

// logRecorder is a logr sink that keeps every entry, for asserting what the
// operator logs.
type logRecorder struct {
	mu      sync.Mutex
	entries []logEntry
}

func (r *logRecorder) logger() logr.Logger { return logr.New(&recSink{rec: r}) }

func (r *logRecorder) all() []logEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]logEntry(nil), r.entries...)
}

// output returns the lines logged from a hook's stream.
func (r *logRecorder) output(stream string) []logEntry {
	var out []logEntry
	for _, e := range r.all() {
		if e.kv["output"] == stream {
			out = append(out, e)
		}
	}
	return out
}

type recSink struct {
	rec *logRecorder
	kv  []any
}

func (s *recSink) Init(logr.RuntimeInfo)  {}
func (s *recSink) Enabled(level int) bool { return true }
func (s *recSink) Info(_ int, msg string, kv ...any) {
	s.add(msg, nil, kv)
}
func (s *recSink) Error(err error, msg string, kv ...any) { s.add(msg, err, kv) }
func (s *recSink) add(msg string, err error, kv []any) {
	m := map[string]any{}
	all := append(append([]any(nil), s.kv...), kv...)
	for i := 0; i+1 < len(all); i += 2 {
		m[fmt.Sprint(all[i])] = all[i+1]
	}
	s.rec.mu.Lock()
	s.rec.entries = append(s.rec.entries, logEntry{msg: msg, kv: m, err: err})
	s.rec.mu.Unlock()
}
func (s *recSink) WithValues(kv ...any) logr.LogSink {
	return &recSink{rec: s.rec, kv: append(append([]any(nil), s.kv...), kv...)}
}
func (s *recSink) WithName(string) logr.LogSink { return s }
