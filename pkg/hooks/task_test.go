package hooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gadgetpm/gadgetpm/kubeevents"
)

// recordingPatcher records what a run hands to the object patcher; the
// patcher itself (pkg/objectpatch) is tested against the API server there.
type recordingPatcher struct {
	mu   sync.Mutex
	docs []string
	err  error
}

func (p *recordingPatcher) Apply(_ context.Context, docs []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.docs = append(p.docs, string(docs))
	return p.err
}

// runLog records what a RunObserver is told.
type runLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *runLog) HookRan(_, _ string, _ time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

type taskFixture struct {
	observed *runLog
	deps     TaskDeps
	patcher  *recordingPatcher
	reg      *prometheus.Registry
	rec      *logRecorder
	ctx      context.Context
}

func newTaskFixture(t *testing.T, snaps Snapshots) *taskFixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	f := &taskFixture{patcher: &recordingPatcher{}, reg: reg, rec: &logRecorder{}}
	f.observed = &runLog{}
	f.deps = TaskDeps{Runner: NewRunner(RunnerOptions{}), Snapshots: snaps, Patcher: f.patcher, Metrics: m, Observer: f.observed}
	f.ctx = logr.NewContext(context.Background(), f.rec.logger())
	return f
}

func (f *taskFixture) runs(pkg, hook, binding, outcome string) float64 {
	return testutil.ToFloat64(f.deps.Metrics.runs.WithLabelValues(pkg, hook, binding, outcome))
}

// contextsLogged returns the binding contexts the Go hook echoed.
func (f *taskFixture) contextsLogged(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, e := range f.rec.output("stdout") {
		if c, ok := strings.CutPrefix(e.msg, "context="); ok {
			out = append(out, c)
		}
	}
	return out
}

func goHookPackage(t *testing.T) string {
	t.Helper()
	dir := newPackage(t, nil)
	if err := os.MkdirAll(filepath.Join(dir, "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(goHook, filepath.Join(dir, "hooks", "go-hook")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Every binding type runs the compiled Go hook end to end: binding context
// in, values patch, metric and object patch out.
func TestRunTaskEachBindingWithGoHook(t *testing.T) {
	ns := env.Namespace(t)
	cm := liveConfigMap(t, ns, "watched", map[string]string{"color": "blue"})
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := Load(context.Background(), goHookPackage(t), []string{"go-hook"}, LoadOptions{Package: "test-pkg", PackageKey: "ns.test-pkg", Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	h := hooks[0]
	if m := h.Config.Kubernetes[0].Monitor; m.Kind != "ConfigMap" || m.APIVersion != "v1" {
		t.Fatalf("kind configmap resolved to %s %s", m.APIVersion, m.Kind)
	}
	snap := []kubeevents.ObjectAndFilterResult{{Object: cm, FilterResult: []byte(`{"color":"blue"}`)}}
	f := newTaskFixture(t, snapshotMap{"ns.test-pkg/go-hook/cms": snap})
	store, err := NewValuesStore(ValuesStoreOptions{Package: "test-pkg"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		trigger Trigger
		want    string // the one binding context, as JSON
	}{
		{Trigger{Type: OnStartup}, `{"binding":"onStartup"}`},
		{Trigger{Type: BeforeHelm}, `{"binding":"beforeHelm","snapshots":{"cms":[{"object":OBJ,"filterResult":{"color":"blue"}}]}}`},
		{Trigger{Type: Schedule, Binding: "tick"}, `{"binding":"tick","type":"Schedule","snapshots":{"cms":[{"object":OBJ,"filterResult":{"color":"blue"}}]}}`},
		{Trigger{Type: Kubernetes, Binding: "cms", Event: &kubeevents.Event{MonitorID: "ns.test-pkg/go-hook/cms", Binding: "cms", Type: kubeevents.TypeSynchronization, Objects: snap}},
			`{"binding":"cms","type":"Synchronization","objects":[{"object":OBJ,"filterResult":{"color":"blue"}}]}`},
		{Trigger{Type: Kubernetes, Binding: "cms", Event: &kubeevents.Event{MonitorID: "ns.test-pkg/go-hook/cms", Binding: "cms", Type: kubeevents.TypeEvent, WatchEvent: kubeevents.WatchEventAdded, Objects: snap}},
			`{"binding":"cms","type":"Event","watchEvent":"Added","object":OBJ,"filterResult":{"color":"blue"}}`},
	}
	obj, _ := cm.MarshalJSON()
	counted := map[string]float64{}
	for i, tt := range tests {
		if err := NewRunTask(f.deps, h, store, tt.trigger).Execute(f.ctx); err != nil {
			t.Fatalf("%s: %v", tt.trigger.Label(), err)
		}
		got := f.contextsLogged(t)
		if len(got) != i+1 {
			t.Fatalf("%s: hook echoed %d contexts in total, want %d", tt.trigger.Label(), len(got), i+1)
		}
		assertJSONEqual(t, []byte(got[i]), []byte("["+strings.ReplaceAll(tt.want, "OBJ", string(obj))+"]"))
		counted[tt.trigger.Label()]++
		if n := f.runs("ns.test-pkg", "go-hook", tt.trigger.Label(), OutcomeSuccess); n != counted[tt.trigger.Label()] {
			t.Errorf("%s: %v successful runs counted", tt.trigger.Label(), n)
		}
	}
	if pv, _ := store.PackageValues(); pv["runs"] != 1.0 {
		t.Errorf("values patch not applied: %v", pv)
	}
	if len(f.patcher.docs) != len(tests) || !strings.Contains(f.patcher.docs[0], `"name":"from-gohook"`) {
		t.Errorf("object patches handed over: %q", f.patcher.docs)
	}
	if got := testutil.ToFloat64(collectorFor(t, f.reg, "gohook_contexts")); got != float64(len(tests)) {
		t.Errorf("gohook_contexts = %v", got)
	}
}

// collectorFor gathers one metric family as a collector for ToFloat64.
func collectorFor(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() == name && len(fam.Metric) == 1 {
			m := fam.Metric[0]
			labels := prometheus.Labels{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["package"] != "ns.test-pkg" || labels["hook"] != "go-hook" || labels["kind"] != "go" {
				t.Fatalf("%s labels %v", name, labels)
			}
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name})
			g.Set(m.GetCounter().GetValue())
			return g
		}
	}
	t.Fatalf("metric %s not exported as one series", name)
	return nil
}

const failingHookConfig = `configVersion: v1
onStartup: 1
kubernetes:
- {name: strict, kind: ConfigMap}
- {name: lenient, kind: ConfigMap, allowFailure: true, queue: slow}
schedule:
- {name: tick, crontab: "@hourly", queue: cron}`

func TestRunTaskFailures(t *testing.T) {
	dir := newPackage(t, map[string]string{
		"hooks/fail": bashHook(failingHookConfig, `
echo '{"operation":"Delete","kind":"ConfigMap","namespace":"default","name":"gone"}' > "$KUBERNETES_PATCH_PATH"
echo '[{"op":"add","path":"/testPkg/touched","value":true}]' > "$VALUES_JSON_PATCH_PATH"
echo '{"name":"fail_metric","action":"set","value":1}' > "$METRICS_PATH"
echo "database unreachable" >&2
exit 1`),
	})
	h := loadHook(t, dir, "fail")
	strict := Trigger{Type: Kubernetes, Binding: "strict", Event: &kubeevents.Event{Type: kubeevents.TypeSynchronization}}
	lenient := Trigger{Type: Kubernetes, Binding: "lenient", Event: &kubeevents.Event{Type: kubeevents.TypeSynchronization}}

	t.Run("object patches applied although the hook failed", func(t *testing.T) {
		f := newTaskFixture(t, nil)
		store, _ := NewValuesStore(ValuesStoreOptions{Package: "test-pkg"})
		err := NewRunTask(f.deps, h, store, strict).Execute(f.ctx)
		if err == nil || !strings.Contains(err.Error(), "hook fail") || !strings.Contains(err.Error(), "database unreachable") {
			t.Fatalf("error %v", err)
		}
		if len(f.patcher.docs) != 1 || !strings.Contains(f.patcher.docs[0], `"name":"gone"`) {
			t.Errorf("object patches not handed over: %q", f.patcher.docs)
		}
		if pv, _ := store.PackageValues(); pv["touched"] != nil {
			t.Errorf("values patch of a failed run applied: %v", pv)
		}
		if n, _ := testutil.GatherAndCount(f.reg, "fail_metric"); n != 0 {
			t.Errorf("metrics of a failed run exported")
		}
		if n := f.runs("ns.test-pkg", "fail", "kubernetes:strict", OutcomeFailure); n != 1 {
			t.Errorf("failures counted %v", n)
		}
		if len(f.observed.errs) != 1 || f.observed.errs[0] == nil {
			t.Errorf("observer saw %v", f.observed.errs)
		}
	})

	t.Run("allowFailure completes the task and is counted", func(t *testing.T) {
		f := newTaskFixture(t, nil)
		if err := NewRunTask(f.deps, h, nil, lenient).Execute(f.ctx); err != nil {
			t.Fatalf("allowFailure binding returned %v", err)
		}
		if n := f.runs("ns.test-pkg", "fail", "kubernetes:lenient", OutcomeAllowedFailure); n != 1 {
			t.Errorf("allowed failures counted %v", n)
		}
		if len(f.observed.errs) != 1 || f.observed.errs[0] != nil {
			t.Errorf("observer saw %v, want one run without error", f.observed.errs)
		}
		logged := false
		for _, e := range f.rec.all() {
			if e.err != nil && strings.Contains(e.msg, "allows failure") {
				logged = true
			}
		}
		if !logged {
			t.Error("allowed failure not logged")
		}
		if len(f.patcher.docs) != 1 {
			t.Errorf("object patches not handed over")
		}
		// Mixed with a strict binding, the task does not tolerate failure.
		if err := NewRunTask(f.deps, h, nil, lenient, strict).Execute(f.ctx); err == nil {
			t.Error("a task with a strict binding tolerated failure")
		}
	})

	t.Run("cancellation is not an allowed failure", func(t *testing.T) {
		slow := loadHook(t, newPackage(t, map[string]string{"hooks/slow": bashHook(failingHookConfig, "sleep 30")}), "slow")
		f := newTaskFixture(t, nil)
		ctx, cancel := context.WithTimeout(f.ctx, 200*time.Millisecond)
		defer cancel()
		err := NewRunTask(f.deps, slow, nil, lenient).Execute(ctx)
		if err == nil || !strings.Contains(err.Error(), "cancelled") {
			t.Errorf("cancelled run of an allowFailure binding returned %v", err)
		}
		if n := f.runs("ns.test-pkg", "slow", "kubernetes:lenient", OutcomeAllowedFailure); n != 0 {
			t.Errorf("cancellation counted as allowed failure")
		}
	})

	t.Run("patcher errors are reported too", func(t *testing.T) {
		f := newTaskFixture(t, nil)
		f.patcher.err = errors.New("operation 0 (Delete ConfigMap default/gone): forbidden")
		err := NewRunTask(f.deps, h, nil, lenient).Execute(f.ctx)
		if err == nil || !strings.Contains(err.Error(), "apply object patches of hook fail") || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("error %v", err)
		}
	})

	t.Run("queue routing", func(t *testing.T) {
		for tr, want := range map[Trigger]string{
			{Type: OnStartup}:                      "",
			{Type: Kubernetes, Binding: "strict"}:  "",
			{Type: Kubernetes, Binding: "lenient"}: "slow",
			{Type: Schedule, Binding: "tick"}:      "cron",
			{Type: Kubernetes, Binding: "unknown"}: "",
		} {
			if got := h.Queue(tr); got != want {
				t.Errorf("Queue(%s) = %q, want %q", tr.Label(), got, want)
			}
		}
	})
}

func TestRunTaskRejectedResults(t *testing.T) {
	schema := []byte(`{"type":"object","properties":{"replicas":{"type":"integer"}}}`)
	tests := []struct {
		name, body, want string
	}{
		{"values patch rejected by the schema", `echo '[{"op":"add","path":"/testPkg/replicas","value":"many"}]' > "$VALUES_JSON_PATCH_PATH"`, "values patch rejected"},
		{"values patch outside the package", `echo '[{"op":"add","path":"/global/x","value":1}]' > "$VALUES_JSON_PATCH_PATH"`, "must start with /testPkg/"},
		{"config values patch rejected by the schema", `echo '[{"op":"add","path":"/testPkg/replicas","value":1.5}]' > "$CONFIG_VALUES_JSON_PATCH_PATH"`, "config values patch rejected"},
		{"metrics not JSON", `echo 'replicas 3' > "$METRICS_PATH"`, "METRICS_PATH: metrics line 1 is not a JSON metric object"},
		{"values patch not JSON", `echo 'replicas=3' > "$VALUES_JSON_PATCH_PATH"`, "VALUES_JSON_PATCH_PATH: item 1 is not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := loadHook(t, newPackage(t, map[string]string{"hooks/h": bashHook(trivialConfig, tt.body)}), "h")
			f := newTaskFixture(t, nil)
			store, err := NewValuesStore(ValuesStoreOptions{Package: "test-pkg", Schema: schema, Defaults: map[string]any{"replicas": 1.0}})
			if err != nil {
				t.Fatal(err)
			}
			err = NewRunTask(f.deps, h, store, Trigger{Type: OnStartup}).Execute(f.ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "hook h") {
				t.Fatalf("error %v, want it to name the hook and say %q", err, tt.want)
			}
			if v, _ := store.Values(); !reflect.DeepEqual(v["testPkg"], map[string]any{"replicas": 1.0}) {
				t.Errorf("values changed: %v", v)
			}
			if n := f.runs("ns.test-pkg", "h", "onStartup", OutcomeFailure); n != 1 {
				t.Errorf("failure counted %v", n)
			}
		})
	}
}

func TestRunTaskMerge(t *testing.T) {
	out := t.TempDir()
	dir := newPackage(t, map[string]string{
		"hooks/a": bashHook(failingHookConfig, `cp "$BINDING_CONTEXT_PATH" "$OUT/context"`),
		"hooks/b": bashHook(failingHookConfig, "true"),
	})
	hooks, err := Load(context.Background(), dir, []string{"a", "b"}, LoadOptions{Package: "test-pkg", PackageKey: "ns.test-pkg"})
	if err != nil {
		t.Fatal(err)
	}
	a, b := hooks[0], hooks[1]
	ev := func(binding, name string) Trigger {
		return Trigger{Type: Kubernetes, Binding: binding, Event: &kubeevents.Event{Type: kubeevents.TypeEvent, WatchEvent: kubeevents.WatchEventAdded,
			Objects: []kubeevents.ObjectAndFilterResult{{FilterResult: []byte(`"` + name + `"`)}}}}
	}
	f := newTaskFixture(t, nil)
	f.deps.Runner = NewRunner(RunnerOptions{Env: Env{Package: map[string]string{"OUT": out}}})
	t1 := NewRunTask(f.deps, a, nil, ev("strict", "one"))
	t2 := NewRunTask(f.deps, a, nil, ev("strict", "two"), Trigger{Type: Schedule, Binding: "tick"})

	if t1.MergeKey() == "" || t1.MergeKey() != t2.MergeKey() {
		t.Fatalf("merge keys %q and %q", t1.MergeKey(), t2.MergeKey())
	}
	for name, other := range map[string]*RunTask{
		"other hook":         NewRunTask(f.deps, b, nil, ev("strict", "x")),
		"other allowFailure": NewRunTask(f.deps, a, nil, ev("lenient", "x")),
	} {
		if other.MergeKey() == t1.MergeKey() {
			t.Errorf("%s shares the merge key", name)
		}
	}
	if k := NewRunTask(f.deps, a, nil, Trigger{Type: OnStartup}).MergeKey(); k != "" {
		t.Errorf("onStartup tasks must not merge, key %q", k)
	}
	if t1.Name() != "hook-run a" {
		t.Errorf("name %q", t1.Name())
	}

	merged := t1.Merge(t2).(*RunTask)
	if len(t1.Triggers()) != 1 || len(t2.Triggers()) != 2 {
		t.Error("Merge modified its inputs")
	}
	if err := merged.Execute(f.ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "context"))
	assertJSONEqual(t, got, []byte(`[
		{"binding":"strict","type":"Event","watchEvent":"Added","filterResult":"one"},
		{"binding":"strict","type":"Event","watchEvent":"Added","filterResult":"two"},
		{"binding":"tick","type":"Schedule"}]`))
	if n := f.runs("ns.test-pkg", "a", "kubernetes:strict,schedule:tick", OutcomeSuccess); n != 1 {
		t.Errorf("merged run counted %v", n)
	}
	if same := t1.Merge(NewRunTask(f.deps, b, nil, ev("strict", "x"))); same != t1 {
		t.Error("a task of another hook was merged")
	}
}
