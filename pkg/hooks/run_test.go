package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

const trivialConfig = "configVersion: v1\nonStartup: 1"

func TestDiscover(t *testing.T) {
	dir := newPackage(t, map[string]string{
		"hooks/20-b":           "#!/bin/sh\n",
		"hooks/10-a":           "#!/bin/sh\n",
		"hooks/lib/common.lib": "x=1\n",
		"hooks/sub/05-c":       "#!/bin/sh\n",
		"templates/cm.yaml":    "kind: ConfigMap\n",
	})
	got, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10-a", "20-b", "sub/05-c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Discover = %v, want %v", got, want)
	}
	none, err := Discover(t.TempDir())
	if err != nil || len(none) != 0 {
		t.Errorf("package without hooks/: %v, %v", none, err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := newPackage(t, map[string]string{
		"hooks/crash":   "#!/bin/sh\necho 'cannot find jq' >&2\nexit 2\n",
		"hooks/garbage": "#!/bin/sh\necho '{{{'\n",
		"hooks/unknown": "#!/bin/sh\necho 'configVersion: v1'; echo 'onEverything: 1'\n",
	})
	tests := map[string][]string{
		"crash":   {"hook crash --config", "exit status 2", "cannot find jq"},
		"garbage": {"hook garbage", "neither YAML nor JSON"},
		"unknown": {"hook unknown", "field onEverything", "unknown binding"},
	}
	for name, want := range tests {
		_, err := Load(context.Background(), dir, []string{name}, LoadOptions{Package: "p", PackageKey: "ns.p"})
		if err == nil {
			t.Fatalf("%s: loaded", name)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", name, err, w)
			}
		}
	}
}

func TestLoadGoHook(t *testing.T) {
	dir := newPackage(t, nil)
	if err := os.MkdirAll(filepath.Join(dir, "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(goHook, filepath.Join(dir, "hooks", "go-hook")); err != nil {
		t.Fatal(err)
	}
	names, err := Discover(dir)
	if err != nil || !reflect.DeepEqual(names, []string{"go-hook"}) {
		t.Fatalf("Discover = %v, %v", names, err)
	}
	h := loadHook(t, dir, "go-hook")
	if got := h.Config.Kubernetes[0].Monitor.ID; got != "ns.test-pkg/go-hook/cms" {
		t.Errorf("monitor ID %q", got)
	}
	if !reflect.DeepEqual(h.Bindings(), []string{"onStartup", "beforeHelm", "schedule:tick", "kubernetes:cms"}) {
		t.Errorf("bindings %v", h.Bindings())
	}
}

func TestRunEnvironmentAndFiles(t *testing.T) {
	out := t.TempDir()
	t.Setenv("GADGETPM_TEST_SECRET", "must-not-leak")
	t.Setenv("KUBECONFIG", "/etc/kube/config")
	dir := newPackage(t, map[string]string{
		"hooks/10-env": bashHook(trivialConfig, `
env -0 > "$OUT/env"
pwd > "$OUT/pwd"
cp "$BINDING_CONTEXT_PATH" "$OUT/context"
cp "$VALUES_PATH" "$OUT/values"
cp "$CONFIG_VALUES_PATH" "$OUT/config-values"
for f in "$VALUES_JSON_PATCH_PATH" "$CONFIG_VALUES_JSON_PATCH_PATH" "$KUBERNETES_PATCH_PATH" "$METRICS_PATH"; do
  [[ -f $f && ! -s $f ]] || { echo "$f is not an empty file" >&2; exit 1; }
done
touch "$TMPDIR/scratch"`),
	})
	h := loadHook(t, dir, "10-env")
	r := NewRunner(RunnerOptions{Env: Env{Package: map[string]string{"OUT": out, "VALUES_PATH": "/evil", "PATH": "/nowhere"}}})
	res, err := r.Run(context.Background(), h, RunInput{
		Binding:      "onStartup",
		Contexts:     []BindingContext{{Binding: "onStartup"}},
		Values:       Values{"global": map[string]any{"a": 1.0}, "testPkg": map[string]any{"b": "c"}},
		ConfigValues: Values{"global": map[string]any{}, "testPkg": map[string]any{"b": "d"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil || res.ExitCode != 0 {
		t.Fatalf("run failed: %v (exit %d)", res.Err, res.ExitCode)
	}
	envRaw, _ := os.ReadFile(filepath.Join(out, "env"))
	vars := map[string]string{}
	for _, kv := range strings.Split(strings.TrimRight(string(envRaw), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var keys []string
	for k := range vars {
		switch k {
		case "PWD", "SHLVL", "_", "OLDPWD": // set by bash itself
		default:
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	want := []string{"BINDING_CONTEXT_PATH", "CONFIG_VALUES_JSON_PATCH_PATH", "CONFIG_VALUES_PATH", "HOME", "KUBECONFIG", "KUBERNETES_PATCH_PATH", "METRICS_PATH", "OUT", "PATH", "TMPDIR", "VALUES_JSON_PATCH_PATH", "VALUES_PATH"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("hook environment:\n got %v\nwant %v", keys, want)
	}
	if vars["KUBECONFIG"] != "/etc/kube/config" {
		t.Errorf("KUBECONFIG = %q", vars["KUBECONFIG"])
	}
	if vars["VALUES_PATH"] == "/evil" || vars["PATH"] == "/nowhere" {
		t.Errorf("package env overrode protocol variables: VALUES_PATH=%s PATH=%s", vars["VALUES_PATH"], vars["PATH"])
	}
	if pwd, _ := os.ReadFile(filepath.Join(out, "pwd")); strings.TrimSpace(string(pwd)) != dir {
		t.Errorf("working dir %q, want the package dir %q", pwd, dir)
	}
	for file, want := range map[string]string{
		"context":       `[{"binding":"onStartup"}]`,
		"values":        `{"global":{"a":1},"testPkg":{"b":"c"}}`,
		"config-values": `{"global":{},"testPkg":{"b":"d"}}`,
	} {
		got, _ := os.ReadFile(filepath.Join(out, file))
		assertJSONEqual(t, got, []byte(want))
	}
	if _, err := os.Stat(vars["BINDING_CONTEXT_PATH"]); !os.IsNotExist(err) {
		t.Errorf("run directory not removed: %v", err)
	}
}

func TestRunInClusterEnvironment(t *testing.T) {
	out := t.TempDir()
	dir := newPackage(t, map[string]string{"hooks/h": bashHook(trivialConfig, `echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT ${KUBECONFIG:-none}" > "$OUT/kube"`)})
	h := loadHook(t, dir, "h")
	r := NewRunner(RunnerOptions{Env: Env{
		Kube:    map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
		Package: map[string]string{"OUT": out},
	}})
	t.Setenv("KUBECONFIG", "/ignored")
	if res, err := r.Run(context.Background(), h, RunInput{}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "kube"))
	if strings.TrimSpace(string(got)) != "10.0.0.1:443 none" {
		t.Errorf("kube env %q", got)
	}
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	out := t.TempDir()
	dir := newPackage(t, map[string]string{"hooks/hang": bashHook(trivialConfig, `
sleep 300 & echo $! > "$OUT/child"
bash -c 'sleep 300 & echo $! > "$OUT/grandchild"; wait' &
echo started
wait`)})
	h := loadHook(t, dir, "hang")
	h.Timeout = time.Second // this hook's own limit; the runner's is 5m
	rec := &logRecorder{}
	ctx := logr.NewContext(context.Background(), rec.logger())
	r := NewRunner(RunnerOptions{Env: Env{Package: map[string]string{"OUT": out}}})
	res, err := r.Run(ctx, h, RunInput{Binding: "onStartup"})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Err, ErrTimeout) || res.ExitCode != -1 {
		t.Fatalf("want a timeout, got %v (exit %d)", res.Err, res.ExitCode)
	}
	if !strings.Contains(res.Err.Error(), "hook hang") || !strings.Contains(res.Err.Error(), "after 1s") {
		t.Errorf("error does not name the hook: %v", res.Err)
	}
	for _, f := range []string{"child", "grandchild"} {
		raw, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatalf("%s pid: %v", f, err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		waitGone(t, f, pid)
	}
}

// waitGone waits until pid no longer exists (killed processes disappear once
// their new parent reaps them).
func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	eventually.True(t, 30*time.Second, fmt.Sprintf("%s (pid %d) to be gone", what, pid), func() bool {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return strings.Contains(string(stat), ") Z ") // killed, waiting to be reaped
	})
}

func TestRunOutputStreaming(t *testing.T) {
	dir := newPackage(t, map[string]string{"hooks/loud": bashHook(trivialConfig, `
head -c 1048576 /dev/zero | tr '\0' x
echo
echo after
echo "on stderr" >&2
printf 'no newline at the end'`)})
	h := loadHook(t, dir, "loud")
	rec := &logRecorder{}
	ctx := logr.NewContext(context.Background(), rec.logger())
	res, err := NewRunner(RunnerOptions{}).Run(ctx, h, RunInput{Binding: "schedule:tick"})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	stdout := rec.output("stdout")
	if len(stdout) != 3 {
		t.Fatalf("want 3 stdout lines, got %d", len(stdout))
	}
	if len(stdout[0].msg) != 1<<20 || strings.Trim(stdout[0].msg, "x") != "" {
		t.Errorf("1 MiB line arrived as %d bytes", len(stdout[0].msg))
	}
	if stdout[1].msg != "after" || stdout[2].msg != "no newline at the end" {
		t.Errorf("lines: %q, %q", stdout[1].msg, stdout[2].msg)
	}
	for _, e := range stdout {
		if e.kv["package"] != "ns.test-pkg" || e.kv["hook"] != "loud" || e.kv["binding"] != "schedule:tick" {
			t.Errorf("log entry lacks package/hook/binding: %v", e.kv)
		}
	}
	if stderr := rec.output("stderr"); len(stderr) != 1 || stderr[0].msg != "on stderr" {
		t.Errorf("stderr lines: %+v", stderr)
	}
}

func TestLineLoggerSplitsEndlessLines(t *testing.T) {
	rec := &logRecorder{}
	l := newLineLogger(rec.logger(), "stdout")
	l.max = 4
	_, _ = l.Write([]byte("abcdefghij\nkl"))
	_, _ = l.Write([]byte("m\r\n"))
	l.Flush()
	var got []string
	for _, e := range rec.all() {
		got = append(got, e.msg)
	}
	if want := []string{"abcd", "efgh", "ij", "klm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

func TestRunFailureAndOutputs(t *testing.T) {
	dir := newPackage(t, map[string]string{"hooks/fail": bashHook(trivialConfig, `
echo '{"op":"add","path":"/testPkg/a","value":1}' >> "$VALUES_JSON_PATCH_PATH"
echo '[{"op":"remove","path":"/testPkg/b"},{"op":"replace","path":"/testPkg/c","value":"x"}]' >> "$VALUES_JSON_PATCH_PATH"
echo '[{"op":"add","path":"/testPkg/d","value":true}]' > "$CONFIG_VALUES_JSON_PATCH_PATH"
printf 'operation: Delete\nkind: Pod\nname: p\n' > "$KUBERNETES_PATCH_PATH"
echo '{"name":"m","action":"set","value":2}' > "$METRICS_PATH"
echo "something broke" >&2
exit 3`)})
	h := loadHook(t, dir, "fail")
	res, err := NewRunner(RunnerOptions{}).Run(context.Background(), h, RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Err == nil || !strings.Contains(res.Err.Error(), "exit status 3") || !strings.Contains(res.Err.Error(), "something broke") {
		t.Errorf("exit %d, err %v", res.ExitCode, res.Err)
	}
	if res.Duration <= 0 {
		t.Errorf("duration %v", res.Duration)
	}
	if res.OutputErr != nil {
		t.Fatal(res.OutputErr)
	}
	if len(res.ValuesPatch) != 3 || res.ValuesPatch[1].Kind() != "remove" || len(res.ConfigValuesPatch) != 1 {
		t.Errorf("patches: %d values ops, %d config ops", len(res.ValuesPatch), len(res.ConfigValuesPatch))
	}
	if !strings.Contains(string(res.KubernetesPatch), "operation: Delete") {
		t.Errorf("kubernetes patch %q", res.KubernetesPatch)
	}
	if len(res.Metrics) != 1 || res.Metrics[0].Name != "m" || *res.Metrics[0].Value != 2 {
		t.Errorf("metrics %+v", res.Metrics)
	}
}

func TestRunUnreadableOutputs(t *testing.T) {
	dir := newPackage(t, map[string]string{"hooks/bad": bashHook(trivialConfig, `
echo '{"name":"ok","action":"add","value":1}' > "$METRICS_PATH"
echo 'count 3' >> "$METRICS_PATH"
echo '[{"op":"frobnicate","path":"/testPkg/a"}]' > "$VALUES_JSON_PATCH_PATH"`)})
	h := loadHook(t, dir, "bad")
	res, err := NewRunner(RunnerOptions{}).Run(context.Background(), h, RunInput{})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	for _, want := range []string{"METRICS_PATH: metrics line 2 is not a JSON metric object", "VALUES_JSON_PATCH_PATH", `op "frobnicate"`} {
		if res.OutputErr == nil || !strings.Contains(res.OutputErr.Error(), want) {
			t.Errorf("output error %v lacks %q", res.OutputErr, want)
		}
	}
}

func TestRunRateLimit(t *testing.T) {
	dir := newPackage(t, map[string]string{"hooks/limited": bashHook("configVersion: v1\nonStartup: 1\nsettings:\n  executionMinInterval: 1m\n  executionBurst: 2", "true")})
	h := loadHook(t, dir, "limited")
	r := NewRunner(RunnerOptions{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var delays []time.Duration
	r.now = func() time.Time { return now }
	r.sleep = func(_ context.Context, d time.Duration) error {
		delays = append(delays, d)
		now = now.Add(d)
		return nil
	}
	for i := 0; i < 4; i++ {
		if res, err := r.Run(context.Background(), h, RunInput{}); err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
	}
	// Two runs back to back (the burst), then one per minute.
	want := []time.Duration{0, 0, time.Minute, time.Minute}
	if !reflect.DeepEqual(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	// A removed package's limiters are dropped: the next run starts fresh.
	r.Forget("ns.other")
	delays = nil
	if _, err := r.Run(context.Background(), h, RunInput{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(delays, []time.Duration{time.Minute}) {
		t.Errorf("Forget of another package reset this one: %v", delays)
	}
	r.Forget("ns.test-pkg")
	delays = nil
	if _, err := r.Run(context.Background(), h, RunInput{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(delays, []time.Duration{0}) {
		t.Errorf("after Forget: delays %v, want [0]", delays)
	}
	// A cancelled wait returns without running.
	r.sleep = func(ctx context.Context, d time.Duration) error { return context.Canceled }
	if _, err := r.Run(context.Background(), h, RunInput{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

func TestRunWithoutConfig(t *testing.T) {
	if _, err := NewRunner(RunnerOptions{}).Run(context.Background(), &Hook{Name: "x"}, RunInput{}); err == nil || !strings.Contains(err.Error(), "no config") {
		t.Errorf("error %v", err)
	}
	if err := NewRunTask(TaskDeps{}, &Hook{Name: "x"}, nil).Execute(context.Background()); err == nil {
		t.Error("task without a loaded hook ran")
	}
}

func TestRunnerTimeoutOption(t *testing.T) {
	h := loadHook(t, newPackage(t, map[string]string{"hooks/slow": bashHook(trivialConfig, "sleep 30")}), "slow")
	res, err := NewRunner(RunnerOptions{Timeout: 300 * time.Millisecond}).Run(context.Background(), h, RunInput{})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Err, ErrTimeout) || !strings.Contains(res.Err.Error(), "after 300ms") {
		t.Errorf("want the runner's timeout, got %v", res.Err)
	}
}

// A long-running operator runs hooks forever: runs must not leak file
// descriptors or run directories.
func TestRunLeaksNothing(t *testing.T) {
	tmp := t.TempDir()
	h := loadHook(t, newPackage(t, map[string]string{"hooks/h": bashHook(trivialConfig, `echo out; echo err >&2; sleep 0.01 &`)}), "h")
	r := NewRunner(RunnerOptions{TempDir: tmp})
	countFDs := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	before := countFDs()
	const runs = 30
	for i := 0; i < runs; i++ {
		if res, err := r.Run(context.Background(), h, RunInput{}); err != nil || res.Err != nil {
			t.Fatal(err, res.Err)
		}
	}
	// A few descriptors may come and go with the test's API client; a leak
	// per run would show as at least one per run.
	if after := countFDs(); after-before >= runs/3 {
		t.Errorf("open file descriptors grew from %d to %d over %d runs", before, after, runs)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("%d run directories left behind", len(left))
	}
}
