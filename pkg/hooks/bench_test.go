package hooks

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// benchScript is the trivial hook both benchmarks run: it reads its binding
// context, as every real hook does.
const benchScript = `#!/usr/bin/env bash
if [[ ${1:-} == --config ]]; then echo '{"configVersion":"v1","onStartup":1}'; exit 0; fi
read -r _ < "${BINDING_CONTEXT_PATH:-/dev/null}" || true
`

// BenchmarkHookRun measures one full hook run through Runner.Run: run
// directory and input files, minimal environment, process group, output
// streaming, result files read back.
func BenchmarkHookRun(b *testing.B) {
	dir := newPackage(b, map[string]string{"hooks/bench": benchScript})
	h := loadHook(b, dir, "bench")
	r := NewRunner(RunnerOptions{})
	in := RunInput{Binding: "onStartup", Contexts: []BindingContext{{Binding: "onStartup"}}, Values: Values{"global": map[string]any{}, "testPkg": map[string]any{"a": 1}}}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := r.Run(ctx, h, in)
		if err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
	}
}

// BenchmarkExecByHand runs the same script with os/exec and nothing else:
// the reference BenchmarkHookRun is compared with.
func BenchmarkExecByHand(b *testing.B) {
	dir := newPackage(b, map[string]string{"hooks/bench": benchScript})
	path := filepath.Join(dir, "hooks", "bench")
	ctxFile := filepath.Join(b.TempDir(), "context.json")
	if err := os.WriteFile(ctxFile, []byte(`[{"binding":"onStartup"}]`), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(path)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BINDING_CONTEXT_PATH=" + ctxFile}
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHookRunOverhead alternates a hook run and exec by hand of the same
// script in one loop, so both see the same machine load, and reports each
// one's mean time and their ratio (hook-run/exec).
func BenchmarkHookRunOverhead(b *testing.B) { benchmarkOverhead(b, nil) }

// BenchmarkHookRunSandboxedOverhead is BenchmarkHookRunOverhead with the
// hook sandbox on: the re-executed init, its namespaces and mounts, and
// the switch to the hook user on every run. It needs root.
func BenchmarkHookRunSandboxedOverhead(b *testing.B) {
	if os.Getuid() != 0 {
		b.Skip("the hook sandbox needs root")
	}
	sb, err := sandbox.New(context.Background(), sandbox.Options{Mode: sandbox.On})
	if err != nil {
		b.Fatal(err)
	}
	benchmarkOverhead(b, sb)
}

func benchmarkOverhead(b *testing.B, sb *sandbox.Sandbox) {
	dir := newPackage(b, map[string]string{"hooks/bench": benchScript})
	// The sandboxed hook user must reach the package.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		b.Fatal(err)
	}
	h := loadHook(b, dir, "bench")
	r := NewRunner(RunnerOptions{Sandbox: sb})
	in := RunInput{Binding: "onStartup", Contexts: []BindingContext{{Binding: "onStartup"}}, Values: Values{"global": map[string]any{}, "testPkg": map[string]any{"a": 1}}}
	ctxFile := filepath.Join(b.TempDir(), "context.json")
	if err := os.WriteFile(ctxFile, []byte(`[{"binding":"onStartup"}]`), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var hookTime, execTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := r.Run(ctx, h, in)
		if err != nil || res.Err != nil {
			b.Fatal(err, res.Err)
		}
		hookTime += time.Since(start)

		start = time.Now()
		cmd := exec.Command(h.Path)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BINDING_CONTEXT_PATH=" + ctxFile}
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		execTime += time.Since(start)
	}
	b.ReportMetric(float64(hookTime.Nanoseconds())/float64(b.N), "hook-ns/run")
	b.ReportMetric(float64(execTime.Nanoseconds())/float64(b.N), "exec-ns/run")
	b.ReportMetric(float64(hookTime)/float64(execTime), "ratio")
}
