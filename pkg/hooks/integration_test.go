package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/pkg/objectpatch"
)

// Compile-time checks that the real services satisfy the interfaces
// pkg/hooks consumes.
var (
	_ Snapshots     = (*kubeevents.Monitors)(nil)
	_ ObjectPatcher = (*objectpatch.Patcher)(nil)
)

// eventSource runs the real event monitors for a test and stops it (and
// waits for it) at cleanup.
type eventSource struct {
	mgr *kubeevents.Monitors
}

func startEvents(t *testing.T) *eventSource {
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
	return &eventSource{mgr: mgr}
}

// next waits for the next event.
func (s *eventSource) next(t *testing.T) kubeevents.Event {
	t.Helper()
	select {
	case ev, ok := <-s.mgr.Events():
		if !ok {
			t.Fatal("events channel closed")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
	}
	return kubeevents.Event{}
}

// watchHookBody keeps every binding context in $OUT, records the run in a
// ConfigMap through an object patch, and fails when the object asks it to.
const watchHookBody = `n=$(ls "$OUT" | wc -l)
cp "$BINDING_CONTEXT_PATH" "$OUT/$(printf %%03d "$n")"
cat > "$KUBERNETES_PATCH_PATH" <<PATCH
operation: CreateOrUpdate
object:
  apiVersion: v1
  kind: ConfigMap
  metadata: {name: hook-runs, namespace: %s}
  data: {runs: "$((n + 1))"}
PATCH
if grep -q '"fail":"please"' "$BINDING_CONTEXT_PATH"; then echo "asked to fail" >&2; exit 1; fi`

// TestKubernetesBindingEndToEnd runs a bash hook from a kubernetes binding
// against the real API server, the way the coordinator wires it: the hook's
// config is resolved (short name, plural), its monitors run in the events
// manager, a jqFilter suppresses changes that do not touch the filtered
// data, snapshots of an included binding come along, and the hook's object
// patches are applied by the object patcher, also when the hook fails.
func TestKubernetesBindingEndToEnd(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	out := t.TempDir()
	config := fmt.Sprintf(`configVersion: v1
kubernetes:
- name: cms
  kind: cm
  namespace: {nameSelector: {matchNames: [%[1]s]}}
  labelSelector: {matchLabels: {watch: "yes"}}
  jqFilter: .data
  includeSnapshotsFrom: [everything]
- name: everything
  apiVersion: v1
  kind: ConfigMaps
  namespace: {nameSelector: {matchNames: [%[1]s]}}
  executeHookOnEvent: []
  executeHookOnSynchronization: false
  keepFullObjectsInMemory: false
  jqFilter: .metadata.name`, ns)
	dir := newPackage(t, map[string]string{"hooks/watch": bashHook(config, fmt.Sprintf(watchHookBody, ns))})
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := Load(ctx, dir, []string{"watch"}, LoadOptions{Package: "test-pkg", PackageKey: "ns.test-pkg", Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	h := hooks[0]

	// An object that exists before the monitors start, and one the label
	// selector leaves out.
	mk := func(name string, labels, data map[string]string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Data: data}
		if err := env.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	mk("a", map[string]string{"watch": "yes"}, map[string]string{"k": "1"})
	mk("ignored", nil, map[string]string{"k": "0"})

	src := startEvents(t)
	for _, b := range h.Config.Kubernetes {
		if err := src.mgr.AddMonitor(ctx, b.Monitor); err != nil {
			t.Fatal(err)
		}
		if err := src.mgr.StartMonitor(b.Monitor.ID); err != nil {
			t.Fatal(err)
		}
	}
	patcher, err := objectpatch.New(env.Config, mapper, nil)
	if err != nil {
		t.Fatal(err)
	}
	deps := TaskDeps{Runner: NewRunner(RunnerOptions{Env: Env{Package: map[string]string{"OUT": out}}}), Snapshots: src.mgr, Patcher: patcher}
	run := func(e kubeevents.Event) error {
		t.Helper()
		return NewRunTask(deps, h, nil, Trigger{Type: Kubernetes, Binding: e.Binding, Event: &e}).Execute(ctx)
	}
	update := func(name string, change func(*corev1.ConfigMap)) {
		t.Helper()
		cm := &corev1.ConfigMap{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
			t.Fatal(err)
		}
		change(cm)
		if err := env.Client.Update(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Synchronization with the one matching object.
	first := src.next(t)
	if first.Type != kubeevents.TypeSynchronization || first.Binding != "cms" {
		t.Fatalf("first event %s %s", first.Binding, first.Type)
	}
	if err := run(first); err != nil {
		t.Fatal(err)
	}
	// 2. A change outside .data and a change to an unselected object fire
	// nothing; the data change after them is the next event.
	update("a", func(cm *corev1.ConfigMap) { cm.Annotations = map[string]string{"touched": "yes"} })
	update("ignored", func(cm *corev1.ConfigMap) { cm.Data["k"] = "9" })
	update("a", func(cm *corev1.ConfigMap) { cm.Data["k"] = "2" })
	second := src.next(t)
	if second.Type != kubeevents.TypeEvent || second.WatchEvent != kubeevents.WatchEventModified {
		t.Fatalf("second event %s %s %s", second.Binding, second.Type, second.WatchEvent)
	}
	if err := run(second); err != nil {
		t.Fatal(err)
	}
	// 3. The hook fails; its object patch is applied all the same.
	update("a", func(cm *corev1.ConfigMap) { cm.Data["fail"] = "please" })
	if err := run(src.next(t)); err == nil || !strings.Contains(err.Error(), "asked to fail") {
		t.Fatalf("failing run: %v", err)
	}

	files, _ := filepath.Glob(filepath.Join(out, "*"))
	if len(files) != 3 {
		t.Fatalf("hook ran %d times, want 3", len(files))
	}
	var contexts [][]map[string]any
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		var c []map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		contexts = append(contexts, c)
	}
	syncCtx := contexts[0][0]
	objs, _ := syncCtx["objects"].([]any)
	if syncCtx["type"] != "Synchronization" || len(objs) != 1 {
		t.Fatalf("synchronization context %v", syncCtx)
	}
	if fr := objs[0].(map[string]any)["filterResult"]; fmt.Sprint(fr) != "map[k:1]" {
		t.Errorf("synchronization filterResult %v", fr)
	}
	mod := contexts[1][0]
	if mod["type"] != "Event" || mod["watchEvent"] != "Modified" || fmt.Sprint(mod["filterResult"]) != "map[k:2]" {
		t.Errorf("event context %v", mod)
	}
	if obj, _ := mod["object"].(map[string]any); obj == nil || obj["metadata"].(map[string]any)["name"] != "a" {
		t.Errorf("event object %v", mod["object"])
	}
	// Snapshots of the included binding: filter results only, every
	// ConfigMap of the namespace.
	snaps, _ := mod["snapshots"].(map[string]any)
	everything, _ := snaps["everything"].([]any)
	var names []string
	for _, item := range everything {
		m := item.(map[string]any)
		if _, has := m["object"]; has {
			t.Errorf("keepFullObjectsInMemory is false, but the snapshot has objects")
		}
		names = append(names, fmt.Sprint(m["filterResult"]))
	}
	// hook-runs may or may not have reached that monitor yet; a and ignored
	// were there before the monitors started.
	if got := "," + strings.Join(names, ",") + ","; !strings.Contains(got, ",a,") || !strings.Contains(got, ",ignored,") {
		t.Errorf("snapshot of everything: %s", got)
	}

	runs := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "hook-runs"}, runs); err != nil {
		t.Fatalf("object patch not applied: %v", err)
	}
	if runs.Data["runs"] != "3" {
		t.Errorf("hook-runs %v: the failed run's patch must be applied too", runs.Data)
	}
}
