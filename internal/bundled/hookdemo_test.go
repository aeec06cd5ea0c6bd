package bundled_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/objectpatch"
)

const (
	demoName = "hook-demo"
	demoKey  = "demo-ns.hook-demo"
	// demoLabel is the label the kubernetes hook's binding selects.
	demoLabel = "gadgetpm.io/demo"
)

func demoDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(env.RepoRoot, "charts", "packages", demoName)
}

// loadDemo lints the package the way the operator loads it and fails on
// any problem.
func loadDemo(t testing.TB) *loader.Package {
	t.Helper()
	p, problems := loader.Check(context.Background(), demoDir(t), loader.Options{})
	for _, pr := range problems {
		t.Errorf("lint: %s", pr)
	}
	if len(problems) > 0 {
		t.FailNow()
	}
	return p
}

// posixPath is a directory holding only the tools the hooks may use, so a
// hook that calls jq, kubectl or bash fails the test instead of passing on
// a machine that happens to have them.
func posixPath(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"sh", "cat", "printf", "sed", "grep", "tr", "sort", "date", "wc", "dirname", "basename"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("the hooks need %s, which this machine lacks: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// demoHooks loads every hook of the package with pkg/hooks, by name.
func demoHooks(t testing.TB) map[string]*hooks.Hook {
	t.Helper()
	names, err := hooks.Discover(demoDir(t))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := hooks.Load(context.Background(), demoDir(t), names, hooks.LoadOptions{
		Package: demoName, PackageKey: demoKey, Env: hooks.Env{Path: posixPath(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*hooks.Hook{}
	for _, h := range hs {
		out[h.Name] = h
	}
	return out
}

func TestHookDemoLintsClean(t *testing.T) {
	p := loadDemo(t)
	if p.Name != demoName || p.Version == "" {
		t.Fatalf("loaded %s %s, want %s with a version", p.Name, p.Version, demoName)
	}
	var names []string
	for _, h := range p.Hooks {
		names = append(names, h.Name)
	}
	want := []string{"10-startup.sh", "20-tick.sh", "30-configmaps.sh", "40-before-helm.sh", "50-after-helm.sh", "60-after-delete.sh"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("hooks = %v, want %v (hooks/lib/common.sh is a sourced library, not a hook)", names, want)
	}
	if p.Catalog == nil || len(p.Catalog.DataSources) != 1 {
		t.Fatalf("catalog = %+v, want the trace_exec gadget's one data source", p.Catalog)
	}
	if p.Requirements.Order != 100 || len(p.Requirements.Requires) != 0 {
		t.Fatalf("requirements = %+v, want order 100 and no required packages", p.Requirements)
	}
	// make bpf copies the trace_exec object into the package; a stale copy
	// would ship a gadget that differs from its source.
	built, err := os.ReadFile(filepath.Join(env.RepoRoot, "bpf", "gadgets", "trace_exec", "program.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(filepath.Join(demoDir(t), "gadget", "program.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, shipped) {
		t.Fatal("charts/packages/hook-demo/gadget/program.bpf.o differs from bpf/gadgets/trace_exec/program.bpf.o: run 'make bpf' and commit both")
	}
}

// TestHookDemoUsesEveryBinding is the package's promise: one example of
// each binding a gadget package can use.
func TestHookDemoUsesEveryBinding(t *testing.T) {
	hs := demoHooks(t)
	want := map[string][]string{
		"10-startup.sh":      {"onStartup"},
		"20-tick.sh":         {"schedule:tick"},
		"30-configmaps.sh":   {"kubernetes:demo-configmaps"},
		"40-before-helm.sh":  {"beforeHelm"},
		"50-after-helm.sh":   {"afterHelm"},
		"60-after-delete.sh": {"afterDeleteHelm"},
	}
	if len(hs) != len(want) {
		t.Fatalf("loaded %d hooks, want %d", len(hs), len(want))
	}
	for name, bindings := range want {
		h, ok := hs[name]
		if !ok {
			t.Fatalf("hook %s missing", name)
		}
		if got := h.Bindings(); !reflect.DeepEqual(got, bindings) {
			t.Errorf("%s bindings = %v, want %v", name, got, bindings)
		}
	}
	tick := hs["20-tick.sh"].Config.Schedules[0]
	if tick.Crontab != "@every 30s" || tick.Queue != "ticks" || !tick.AllowFailure {
		t.Errorf("schedule binding = %+v, want @every 30s in queue ticks with allowFailure", tick)
	}
	kb := hs["30-configmaps.sh"].Config.Kubernetes[0].Monitor
	if kb.Kind != "ConfigMap" || kb.JqFilter == "" || kb.LabelSelector == nil || kb.LabelSelector.MatchLabels[demoLabel] != "true" {
		t.Errorf("kubernetes binding = %+v, want ConfigMaps labelled %s=true with a jqFilter", kb, demoLabel)
	}
}

// valuesStore holds the package's values the way the operator does:
// values.yaml with settings merged over it, patches checked against
// values.schema.json.
func valuesStore(t testing.TB, p *loader.Package, settings map[string]any) *hooks.ValuesStore {
	t.Helper()
	schema, err := os.ReadFile(filepath.Join(p.Dir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := hooks.NewValuesStore(hooks.ValuesStoreOptions{Package: demoName, Schema: schema, Defaults: p.Chart.Values, Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type metricWant struct {
	name, action string
	value        float64
	// anyValue skips the value check (timestamps).
	anyValue bool
	labels   map[string]string
}

// checkMetrics asserts the metrics a run wrote, in order, and that gadgetpm
// accepts them.
func checkMetrics(t *testing.T, hook string, got []hooks.MetricOp, want []metricWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s wrote %d metric(s) %+v, want %d", hook, len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.name || g.Action != w.action || g.Value == nil {
			t.Fatalf("%s metric %d = %s %s %v, want %s %s", hook, i, g.Name, g.Action, g.Value, w.name, w.action)
		}
		if !w.anyValue && *g.Value != w.value {
			t.Errorf("%s metric %s = %v, want %v", hook, w.name, *g.Value, w.value)
		}
		if len(g.Labels) != len(w.labels) || (len(w.labels) > 0 && !reflect.DeepEqual(g.Labels, w.labels)) {
			t.Errorf("%s metric %s labels = %v, want %v", hook, w.name, g.Labels, w.labels)
		}
	}
	m, err := hooks.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(demoKey, hook, got); err != nil {
		t.Fatalf("gadgetpm refuses the metrics of %s: %v", hook, err)
	}
}

// runHook runs h with the triggers' binding contexts and the store's
// values and fails unless it exited 0 with readable results.
func runHook(t *testing.T, r *hooks.Runner, h *hooks.Hook, s *hooks.ValuesStore, snaps hooks.Snapshots, triggers ...hooks.Trigger) *hooks.RunResult {
	t.Helper()
	vals, err := s.Values()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := r.Run(ctx, h, hooks.RunInput{Binding: triggers[0].Label(), Contexts: h.BindingContexts(triggers, snaps), Values: vals, ConfigValues: s.ConfigValues()})
	if err != nil {
		t.Fatalf("run %s: %v", h.Name, err)
	}
	if res.Err != nil || res.ExitCode != 0 {
		t.Fatalf("%s exited %d: %v", h.Name, res.ExitCode, res.Err)
	}
	if res.OutputErr != nil {
		t.Fatalf("%s wrote unreadable results: %v", h.Name, res.OutputErr)
	}
	return res
}

func patchOps(t *testing.T, p jsonpatch.Patch) []string {
	t.Helper()
	var out []string
	for _, op := range p {
		path, err := op.Path()
		if err != nil {
			t.Fatal(err)
		}
		v, err := op.ValueInterface()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, op.Kind()+" "+path+" "+mustJSON(t, v))
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHookDemoLifecycleHooks runs the hooks of the ORDER bindings and the
// schedule the way the operator does and checks what each wrote: values
// patches that the package's schema accepts and that the chart then
// renders, metrics gadgetpm accepts, and no object patches.
func TestHookDemoLifecycleHooks(t *testing.T) {
	p := loadDemo(t)
	hs := demoHooks(t)
	r := hooks.NewRunner(hooks.RunnerOptions{Env: hooks.Env{Path: posixPath(t)}})
	s := valuesStore(t, p, map[string]any{"greeting": "hi"})

	tests := []struct {
		hook     string
		triggers []hooks.Trigger
		patch    []string
		metrics  []metricWant
	}{
		{
			hook:     "10-startup.sh",
			triggers: []hooks.Trigger{{Type: hooks.OnStartup}},
			metrics:  []metricWant{{name: "hook_demo_startups_total", action: "add", value: 1}},
		},
		{
			hook:     "20-tick.sh",
			triggers: []hooks.Trigger{{Type: hooks.Schedule, Binding: "tick"}},
			metrics: []metricWant{
				{name: "hook_demo_ticks_total", action: "add", value: 1},
				{name: "hook_demo_last_tick_timestamp_seconds", action: "set", anyValue: true},
			},
		},
		{
			// Ticks that waited in the queue arrive merged: one run, one
			// context per tick.
			hook:     "20-tick.sh",
			triggers: []hooks.Trigger{{Type: hooks.Schedule, Binding: "tick"}, {Type: hooks.Schedule, Binding: "tick"}, {Type: hooks.Schedule, Binding: "tick"}},
			metrics: []metricWant{
				{name: "hook_demo_ticks_total", action: "add", value: 3},
				{name: "hook_demo_last_tick_timestamp_seconds", action: "set", anyValue: true},
			},
		},
		{
			hook:     "40-before-helm.sh",
			triggers: []hooks.Trigger{{Type: hooks.BeforeHelm}},
			patch:    []string{"add /hookDemo/beforeHelmRan true"},
			metrics:  []metricWant{{name: "hook_demo_helm_hook_runs_total", action: "add", value: 1, labels: map[string]string{"binding": "beforeHelm"}}},
		},
		{
			hook:     "50-after-helm.sh",
			triggers: []hooks.Trigger{{Type: hooks.AfterHelm}},
			patch:    []string{"add /hookDemo/afterHelmRan true"},
			metrics:  []metricWant{{name: "hook_demo_helm_hook_runs_total", action: "add", value: 1, labels: map[string]string{"binding": "afterHelm"}}},
		},
		{
			hook:     "60-after-delete.sh",
			triggers: []hooks.Trigger{{Type: hooks.AfterDeleteHelm}},
			metrics:  []metricWant{{name: "hook_demo_helm_hook_runs_total", action: "add", value: 1, labels: map[string]string{"binding": "afterDeleteHelm"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.triggers[0].Label()+"/"+tt.hook, func(t *testing.T) {
			h := hs[tt.hook]
			if h == nil {
				t.Fatalf("hook %s missing", tt.hook)
			}
			before := time.Now().Unix()
			res := runHook(t, r, h, s, nil, tt.triggers...)
			if got := patchOps(t, res.ValuesPatch); !reflect.DeepEqual(got, tt.patch) {
				t.Errorf("values patch = %q, want %q", got, tt.patch)
			}
			if len(res.ConfigValuesPatch) != 0 || len(bytes.TrimSpace(res.KubernetesPatch)) != 0 {
				t.Errorf("unexpected config values patch %v or object patch %q", res.ConfigValuesPatch, res.KubernetesPatch)
			}
			checkMetrics(t, tt.hook, res.Metrics, tt.metrics)
			for _, m := range res.Metrics {
				if m.Name == "hook_demo_last_tick_timestamp_seconds" && (int64(*m.Value) < before || int64(*m.Value) > time.Now().Unix()) {
					t.Errorf("last tick timestamp %v is not the time of the run", *m.Value)
				}
			}
			// The operator validates and keeps every values patch.
			if err := s.PatchValues(res.ValuesPatch); err != nil {
				t.Fatalf("the package's schema refuses the values patch of %s: %v", tt.hook, err)
			}
		})
	}

	// The chart sees what the Helm hooks patched, and the settings.
	vals, err := s.PackageValues()
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := nelm.Render(p.Chart, vals, renderOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`greeting: "hi"`, `beforeHelmRan: "true"`, `afterHelmRan: "true"`} {
		if !strings.Contains(rendered.Manifest, want) {
			t.Errorf("rendered ConfigMap lacks %s:\n%s", want, rendered.Manifest)
		}
	}
}

// TestHookDemoRender renders the chart with its defaults and with settings
// users may give, and checks that bad settings fail naming the field.
func TestHookDemoRender(t *testing.T) {
	p := loadDemo(t)
	tests := []struct {
		name     string
		settings map[string]any
		want     []string // substrings of the manifest, or of the error
		absent   []string
		wantErr  bool
	}{
		{name: "defaults", want: []string{"kind: ConfigMap", "name: demo-hook-demo", `greeting: "hello"`, `afterHelmRan: "false"`, "kind: ServiceAccount"}},
		{name: "no service account", settings: map[string]any{"serviceAccount": map[string]any{"create": false}}, want: []string{"kind: ConfigMap"}, absent: []string{"kind: ServiceAccount"}},
		{name: "empty greeting", settings: map[string]any{"greeting": ""}, wantErr: true, want: []string{"greeting"}},
		{name: "unknown setting", settings: map[string]any{"greetings": "typo"}, wantErr: true, want: []string{"greetings"}},
		{name: "wrong type", settings: map[string]any{"afterHelmRan": "yes"}, wantErr: true, want: []string{"afterHelmRan"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The operator checks settings before anything is rendered;
			// Helm checks them again when rendering.
			verr := loader.ValidateSettings(p, tt.settings)
			vals := map[string]any{}
			for k, v := range p.Chart.Values {
				vals[k] = v
			}
			for k, v := range tt.settings {
				vals[k] = v
			}
			r, rerr := nelm.Render(p.Chart, vals, renderOpts)
			if tt.wantErr {
				for _, err := range []error{verr, rerr} {
					if err == nil {
						t.Fatal("bad settings were accepted")
					}
					for _, w := range tt.want {
						if !strings.Contains(err.Error(), w) {
							t.Errorf("error %q does not name %s", err, w)
						}
					}
				}
				return
			}
			if verr != nil || rerr != nil {
				t.Fatalf("validate: %v; render: %v", verr, rerr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Manifest, w) {
					t.Errorf("manifest lacks %q:\n%s", w, r.Manifest)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(r.Manifest, a) {
					t.Errorf("manifest has %q:\n%s", a, r.Manifest)
				}
			}
		})
	}
}

// events runs the real event monitors and stops them at cleanup.
func events(t *testing.T) *kubeevents.Monitors {
	t.Helper()
	mgr, err := kubeevents.New(kubeevents.Options{Config: env.Config})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = mgr.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return mgr
}

func nextEvent(t *testing.T, mgr *kubeevents.Monitors) kubeevents.Event {
	t.Helper()
	select {
	case ev := <-mgr.Events():
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event from the kubernetes binding within 30s")
	}
	return kubeevents.Event{}
}

// TestHookDemoKubernetesHook watches ConfigMaps with the hook's own
// binding through the real event monitors, runs the hook for what it
// reports and applies its object patch to the API server: the record
// ConfigMap says what the hook saw, for a Synchronization, for single
// events and for merged events.
func TestHookDemoKubernetesHook(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	p := loadDemo(t)
	h := demoHooks(t)["30-configmaps.sh"]
	r := hooks.NewRunner(hooks.RunnerOptions{Env: hooks.Env{Path: posixPath(t)}})
	s := valuesStore(t, p, nil)
	mapper, err := hooks.NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Config.ResolveKinds(h.Name, mapper); err != nil {
		t.Fatal(err)
	}
	patcher, err := objectpatch.New(env.Config, mapper, nil)
	if err != nil {
		t.Fatal(err)
	}

	mkCM := func(name string, labels, data map[string]string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Data: data}
		if err := env.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	// A data value that looks like the hook's own patterns must not fool it.
	mkCM("alpha", map[string]string{demoLabel: "true"}, map[string]string{"note": `{"filterResult":{"at":"evil/x"},"type":"Event"}`})
	mkCM("unlabelled", nil, map[string]string{"k": "v"})

	mgr := events(t)
	mon := h.Config.Kubernetes[0].Monitor
	if err := mgr.AddMonitor(ctx, mon); err != nil {
		t.Fatal(err)
	}
	if err := mgr.StartMonitor(mon.ID); err != nil {
		t.Fatal(err)
	}

	trigger := func(ev kubeevents.Event) hooks.Trigger {
		return hooks.Trigger{Type: hooks.Kubernetes, Binding: ev.Binding, Event: &ev}
	}
	// run runs the hook, applies its object patch and returns the record
	// it wrote in ns.
	run := func(wantCount float64, triggers ...hooks.Trigger) map[string]string {
		t.Helper()
		res := runHook(t, r, h, s, mgr, triggers...)
		checkMetrics(t, h.Name, res.Metrics, []metricWant{{name: "hook_demo_configmap_events_total", action: "add", value: wantCount}})
		if len(res.ValuesPatch) != 0 {
			t.Errorf("values patch %v, want none", res.ValuesPatch)
		}
		ops, err := objectpatch.ParseOperations(res.KubernetesPatch)
		if err != nil {
			t.Fatalf("object patch %q: %v", res.KubernetesPatch, err)
		}
		for _, op := range ops {
			if op.Type != objectpatch.CreateOrUpdate || op.Object.GetKind() != "ConfigMap" || op.Object.GetName() != "hook-demo-seen" {
				t.Fatalf("object patch %d is %s %s, want CreateOrUpdate of ConfigMap hook-demo-seen", op.Index, op.Type, op.Target())
			}
			if _, ok := op.Object.GetLabels()[demoLabel]; ok {
				t.Fatalf("the record carries %s: writing it would run the hook again", demoLabel)
			}
		}
		if err := patcher.ApplyOperations(ctx, ops); err != nil {
			t.Fatalf("apply the hook's object patch: %v", err)
		}
		var rec corev1.ConfigMap
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hook-demo-seen"}, &rec); err != nil {
			t.Fatalf("record ConfigMap: %v", err)
		}
		if _, err := time.Parse(time.RFC3339, rec.Data["seenAt"]); err != nil {
			t.Errorf("seenAt %q is not a time: %v", rec.Data["seenAt"], err)
		}
		var ctxs []map[string]any
		if err := json.Unmarshal([]byte(rec.Data["bindingContext"]), &ctxs); err != nil || len(ctxs) != len(triggers) {
			t.Errorf("recorded binding context %q: %d context(s), %v; want the %d the hook got, as JSON", rec.Data["bindingContext"], len(ctxs), err, len(triggers))
		}
		return rec.Data
	}
	checkRecord := func(rec map[string]string, events, objects string) {
		t.Helper()
		if rec["events"] != events || rec["objects"] != objects {
			t.Errorf("record says events %q, objects %q; want %q, %q", rec["events"], rec["objects"], events, objects)
		}
	}

	synced := nextEvent(t, mgr)
	if synced.Type != kubeevents.TypeSynchronization || len(synced.Objects) != 1 {
		t.Fatalf("first event = %s with %d object(s), want a Synchronization with alpha", synced.Type, len(synced.Objects))
	}
	checkRecord(run(1, trigger(synced)), "Synchronization", "alpha")

	mkCM("beta", map[string]string{demoLabel: "true"}, map[string]string{"k": "1"})
	added := nextEvent(t, mgr)
	if added.WatchEvent != kubeevents.WatchEventAdded {
		t.Fatalf("event = %s %s, want Added", added.Type, added.WatchEvent)
	}
	checkRecord(run(1, trigger(added)), "Event/Added", "beta")

	if err := env.Client.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alpha"}}); err != nil {
		t.Fatal(err)
	}
	deleted := nextEvent(t, mgr)
	if deleted.WatchEvent != kubeevents.WatchEventDeleted {
		t.Fatalf("event = %s %s, want Deleted", deleted.Type, deleted.WatchEvent)
	}
	checkRecord(run(1, trigger(deleted)), "Event/Deleted", "alpha")

	// Runs that waited in a queue are merged into one run with every
	// context: the hook reports them all, in order.
	checkRecord(run(2, trigger(added), trigger(deleted)), "Event/Added Event/Deleted", "alpha beta")

	// A Synchronization with nothing to see writes no record and counts 0.
	empty := kubeevents.Event{MonitorID: mon.ID, Binding: mon.Binding, Type: kubeevents.TypeSynchronization}
	res := runHook(t, r, h, s, mgr, trigger(empty))
	if len(bytes.TrimSpace(res.KubernetesPatch)) != 0 {
		t.Errorf("object patch for no objects = %q, want none", res.KubernetesPatch)
	}
	checkMetrics(t, h.Name, res.Metrics, []metricWant{{name: "hook_demo_configmap_events_total", action: "add", value: 0}})
}

// renderOpts renders for a cluster the charts' kubeVersion accepts.
var renderOpts = nelm.RenderOptions{Namespace: "demo", ReleaseName: "demo", KubeVersion: "v1.36.3"}
