package hooks

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// A result file over the cap fails the run with an error naming the file
// and the cap, and is never read: the other files still are.
func TestRunResultFileOverCap(t *testing.T) {
	const limit = 1024
	big := `head -c 1025 /dev/zero | tr '\0' ' ' > "$%s"`
	tests := []struct {
		env   string
		other string // a good result file the same run writes
		check func(*RunResult) bool
	}{
		{EnvValuesJSONPatchPath, `echo '{"name":"m","action":"set","value":1}' > "$METRICS_PATH"`, func(r *RunResult) bool { return len(r.Metrics) == 1 && r.ValuesPatch == nil }},
		{EnvConfigValuesJSONPatchPath, `echo '[{"op":"add","path":"/a","value":1}]' > "$VALUES_JSON_PATCH_PATH"`, func(r *RunResult) bool { return len(r.ValuesPatch) == 1 && r.ConfigValuesPatch == nil }},
		{EnvKubernetesPatchPath, `echo '{"name":"m","action":"set","value":1}' > "$METRICS_PATH"`, func(r *RunResult) bool { return len(r.Metrics) == 1 && r.KubernetesPatch == nil }},
		{EnvMetricsPath, `echo '[{"op":"add","path":"/a","value":1}]' > "$VALUES_JSON_PATCH_PATH"`, func(r *RunResult) bool { return len(r.ValuesPatch) == 1 && r.Metrics == nil }},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			body := strings.Replace(big, "%s", tc.env, 1) + "\n" + tc.other
			h := loadHook(t, newPackage(t, map[string]string{"hooks/big": bashHook(trivialConfig, body)}), "big")
			res, err := NewRunner(RunnerOptions{MaxResultFileBytes: limit}).Run(context.Background(), h, RunInput{})
			if err != nil || res.Err != nil {
				t.Fatal(err, res.Err)
			}
			if !errors.Is(res.OutputErr, ErrResultTooLarge) {
				t.Fatalf("output error %v, want ErrResultTooLarge", res.OutputErr)
			}
			for _, want := range []string{"$" + tc.env, "more than 1024 bytes", "--max-hook-result-size"} {
				if !strings.Contains(res.OutputErr.Error(), want) {
					t.Errorf("output error %q lacks %q", res.OutputErr, want)
				}
			}
			if !tc.check(res) {
				t.Errorf("results %+v: want the capped file dropped and the other read", res)
			}
		})
	}
}

// A hook writing 1 GiB to its values patch costs the operator a bounded
// amount of memory: the file is refused by its size, never read. The
// bound, 64 MiB allocated in all during the run, is far above what a run
// allocates (its pipes, files and buffers: well under 1 MiB) and far
// below the 1 GiB reading the file would.
func TestRunResultFileOfOneGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1 GiB")
	}
	h := loadHook(t, newPackage(t, map[string]string{"hooks/flood": bashHook(trivialConfig,
		`head -c 1G /dev/zero > "$VALUES_JSON_PATCH_PATH"`)}), "flood")
	r := NewRunner(RunnerOptions{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := r.Run(context.Background(), h, RunInput{})
	runtime.ReadMemStats(&after)
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if !errors.Is(res.OutputErr, ErrResultTooLarge) || !strings.Contains(res.OutputErr.Error(), "$"+EnvValuesJSONPatchPath) {
		t.Fatalf("output error %v, want the values patch over the limit", res.OutputErr)
	}
	const bound = 64 << 20
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
		t.Errorf("the run allocated %d bytes, want at most %d", alloc, bound)
	}
	t.Logf("allocated %d bytes, heap in use %d -> %d bytes", after.TotalAlloc-before.TotalAlloc, before.HeapInuse, after.HeapInuse)
	// The runner goes on: the next run of another hook succeeds.
	ok := loadHook(t, newPackage(t, map[string]string{"hooks/ok": bashHook(trivialConfig,
		`echo '[{"op":"add","path":"/a","value":1}]' > "$VALUES_JSON_PATCH_PATH"`)}), "ok")
	res, err = r.Run(context.Background(), ok, RunInput{})
	if err != nil || res.Err != nil || res.OutputErr != nil || len(res.ValuesPatch) != 1 {
		t.Fatalf("next run: %v %+v", err, res)
	}
}
