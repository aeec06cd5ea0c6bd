package hooks

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gadgetpm/gadgetpm/kubeevents"
)

// snapshotMap serves snapshots from a map, standing in for the kubeevents
// manager, which pkg/hooks only consumes.
type snapshotMap map[string][]kubeevents.ObjectAndFilterResult

func (s snapshotMap) Snapshot(id string) []kubeevents.ObjectAndFilterResult { return s[id] }

// liveConfigMap creates a ConfigMap on the API server and returns it as the
// server stored it.
func liveConfigMap(t *testing.T, ns, name string, data map[string]string) *unstructured.Unstructured {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
	if err := env.Client.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cm)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("v1")
	u.SetKind("ConfigMap")
	return u
}

const contextHookConfig = `configVersion: v1
onStartup: 1
beforeHelm: 1
afterHelm: 1
afterDeleteHelm: 1
schedule:
- {name: plain, crontab: "@hourly"}
- {name: with-snap, crontab: "@hourly", includeSnapshotsFrom: [cms]}
- {name: grouped-tick, crontab: "@hourly", group: g}
kubernetes:
- {name: cms, kind: ConfigMap, jqFilter: .data}
- {name: secrets, kind: Secret, includeSnapshotsFrom: [cms]}
- {name: grouped, kind: ConfigMap, group: g, includeSnapshotsFrom: [secrets]}
`

func TestBindingContextShapes(t *testing.T) {
	ns := env.Namespace(t)
	a := liveConfigMap(t, ns, "a", map[string]string{"k": "1"})
	b := liveConfigMap(t, ns, "b", map[string]string{"k": "2"})
	cfg, err := ParseConfig("h", []byte(contextHookConfig))
	if err != nil {
		t.Fatal(err)
	}
	h := &Hook{Name: "h", PackageKey: "ns.p", Config: cfg}
	for i := range cfg.Kubernetes {
		cfg.Kubernetes[i].Monitor.ID = MonitorID("ns.p", "h", cfg.Kubernetes[i].Name)
	}
	snaps := snapshotMap{
		"ns.p/h/cms":     {{Object: a, FilterResult: json.RawMessage(`{"k":"1"}`)}, {Object: b, FilterResult: json.RawMessage(`{"k":"2"}`)}},
		"ns.p/h/grouped": {{Object: b}},
	}
	objA, _ := json.Marshal(a.Object)
	objB, _ := json.Marshal(b.Object)
	cmsSnap := `[{"object":` + string(objA) + `,"filterResult":{"k":"1"}},{"object":` + string(objB) + `,"filterResult":{"k":"2"}}]`
	allSnaps := `{"cms":` + cmsSnap + `,"secrets":[],"grouped":[{"object":` + string(objB) + `}]}`

	tests := []struct {
		name    string
		trigger Trigger
		want    string
	}{
		{"onStartup", Trigger{Type: OnStartup}, `{"binding":"onStartup"}`},
		{"beforeHelm", Trigger{Type: BeforeHelm}, `{"binding":"beforeHelm","snapshots":` + allSnaps + `}`},
		{"afterHelm", Trigger{Type: AfterHelm}, `{"binding":"afterHelm","snapshots":` + allSnaps + `}`},
		{"afterDeleteHelm", Trigger{Type: AfterDeleteHelm}, `{"binding":"afterDeleteHelm","snapshots":` + allSnaps + `}`},
		{"schedule", Trigger{Type: Schedule, Binding: "plain"}, `{"binding":"plain","type":"Schedule"}`},
		{"schedule with snapshots", Trigger{Type: Schedule, Binding: "with-snap"}, `{"binding":"with-snap","type":"Schedule","snapshots":{"cms":` + cmsSnap + `}}`},
		{"synchronization", Trigger{Type: Kubernetes, Binding: "cms", Event: &kubeevents.Event{Type: kubeevents.TypeSynchronization, Objects: []kubeevents.ObjectAndFilterResult{{Object: a, FilterResult: json.RawMessage(`{"k":"1"}`)}}}},
			`{"binding":"cms","type":"Synchronization","objects":[{"object":` + string(objA) + `,"filterResult":{"k":"1"}}]}`},
		{"empty synchronization", Trigger{Type: Kubernetes, Binding: "cms", Event: &kubeevents.Event{Type: kubeevents.TypeSynchronization}},
			`{"binding":"cms","type":"Synchronization","objects":[]}`},
		{"event", Trigger{Type: Kubernetes, Binding: "cms", Event: &kubeevents.Event{Type: kubeevents.TypeEvent, WatchEvent: kubeevents.WatchEventModified, Objects: []kubeevents.ObjectAndFilterResult{{Object: b, FilterResult: json.RawMessage(`{"k":"2"}`)}}}},
			`{"binding":"cms","type":"Event","watchEvent":"Modified","object":` + string(objB) + `,"filterResult":{"k":"2"}}`},
		{"event with included snapshots", Trigger{Type: Kubernetes, Binding: "secrets", Event: &kubeevents.Event{Type: kubeevents.TypeEvent, WatchEvent: kubeevents.WatchEventDeleted, Objects: []kubeevents.ObjectAndFilterResult{{Object: a}}}},
			`{"binding":"secrets","type":"Event","watchEvent":"Deleted","object":` + string(objA) + `,"snapshots":{"cms":` + cmsSnap + `}}`},
		{"group from kubernetes", Trigger{Type: Kubernetes, Binding: "grouped", Event: &kubeevents.Event{Type: kubeevents.TypeEvent, WatchEvent: kubeevents.WatchEventAdded, Objects: []kubeevents.ObjectAndFilterResult{{Object: a}}}},
			`{"binding":"g","type":"Group","snapshots":{"grouped":[{"object":` + string(objB) + `}],"secrets":[]}}`},
		{"group from schedule", Trigger{Type: Schedule, Binding: "grouped-tick"},
			`{"binding":"g","type":"Group","snapshots":{"grouped":[{"object":` + string(objB) + `}],"secrets":[]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(h.BindingContexts([]Trigger{tt.trigger}, snaps))
			if err != nil {
				t.Fatal(err)
			}
			assertJSONEqual(t, got, []byte("["+tt.want+"]"))
		})
	}
}

func assertJSONEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON differs:\n got %s\nwant %s", got, want)
	}
}

// TestBindingContextsCompactGroups follows shell-operator's
// combineBindingContextForHook: when runs merge, a context is dropped when
// the next one belongs to the same group, so consecutive contexts of one
// group collapse to the last.
func TestBindingContextsCompactGroups(t *testing.T) {
	cfg, err := ParseConfig("h", []byte(contextHookConfig+"- {name: other-group, kind: Secret, group: g2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := &Hook{Name: "h", PackageKey: "ns.p", Config: cfg}
	ev := func(binding string) Trigger {
		return Trigger{Type: Kubernetes, Binding: binding, Event: &kubeevents.Event{Type: kubeevents.TypeEvent, WatchEvent: kubeevents.WatchEventAdded}}
	}
	tick := func(binding string) Trigger { return Trigger{Type: Schedule, Binding: binding} }
	tests := []struct {
		name     string
		triggers []Trigger
		want     []string
	}{
		{"one group context", []Trigger{ev("grouped")}, []string{"g/Group"}},
		{"a run of one group collapses", []Trigger{ev("grouped"), ev("grouped"), ev("grouped")}, []string{"g/Group"}},
		{"schedule and kubernetes of one group collapse", []Trigger{tick("plain"), ev("grouped"), tick("grouped-tick"), ev("grouped")}, []string{"plain/Schedule", "g/Group"}},
		{"only consecutive ones", []Trigger{ev("grouped"), ev("cms"), ev("grouped"), tick("grouped-tick")}, []string{"g/Group", "cms/Event", "g/Group"}},
		{"different groups stay", []Trigger{ev("grouped"), ev("other-group"), ev("grouped")}, []string{"g/Group", "g2/Group", "g/Group"}},
		{"ungrouped contexts are never compacted", []Trigger{ev("cms"), ev("cms"), tick("plain"), tick("plain")}, []string{"cms/Event", "cms/Event", "plain/Schedule", "plain/Schedule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, bc := range h.BindingContexts(tt.triggers, nil) {
				got = append(got, bc.Binding+"/"+string(bc.Type))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("contexts %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBindingsSharingAName: as in shell-operator, bindings may share a name;
// each fires with its own settings (found by its monitor or its index), and
// a snapshot asked for by the shared name is the last such binding's.
func TestBindingsSharingAName(t *testing.T) {
	ns := env.Namespace(t)
	a := liveConfigMap(t, ns, "a", nil)
	b := liveConfigMap(t, ns, "b", nil)
	h, err := FromConfig(t.TempDir(), "h", []byte(`configVersion: v1
schedule:
- {crontab: "@hourly", includeSnapshotsFrom: [kubernetes]}
- {crontab: "@daily", queue: daily, allowFailure: true}
kubernetes:
- {kind: ConfigMap, queue: first}
- {kind: ConfigMap, allowFailure: true, includeSnapshotsFrom: [kubernetes]}
`), LoadOptions{Package: "p", PackageKey: "ns.p"})
	if err != nil {
		t.Fatal(err)
	}
	first, second := h.Config.Kubernetes[0].Monitor.ID, h.Config.Kubernetes[1].Monitor.ID
	if first == second {
		t.Fatalf("bindings sharing a name share monitor ID %q", first)
	}
	snaps := snapshotMap{first: {{Object: a}}, second: {{Object: b}}}
	event := func(id string) Trigger {
		return Trigger{Type: Kubernetes, Binding: "kubernetes", Event: &kubeevents.Event{MonitorID: id, Binding: "kubernetes", Type: kubeevents.TypeEvent, WatchEvent: kubeevents.WatchEventAdded, Objects: []kubeevents.ObjectAndFilterResult{{Object: a}}}}
	}

	if q := h.Queue(event(first)); q != "first" {
		t.Errorf("first binding's queue %q, want first", q)
	}
	if q := h.Queue(event(second)); q != "" {
		t.Errorf("second binding's queue %q, want the main queue", q)
	}
	if h.allowsFailure(event(first)) || !h.allowsFailure(event(second)) {
		t.Error("allowFailure must follow the binding whose monitor fired")
	}
	hourly, daily := Trigger{Type: Schedule, Binding: "schedule", Index: 0}, Trigger{Type: Schedule, Binding: "schedule", Index: 1}
	if h.Queue(hourly) != "" || h.Queue(daily) != "daily" || h.allowsFailure(hourly) || !h.allowsFailure(daily) {
		t.Error("schedule bindings sharing a name must be told apart by Index")
	}

	objB, _ := json.Marshal(b.Object)
	wantSnap := `{"kubernetes":[{"object":` + string(objB) + `}]}`
	got, _ := json.Marshal(h.BindingContexts([]Trigger{hourly}, snaps))
	assertJSONEqual(t, got, []byte(`[{"binding":"schedule","type":"Schedule","snapshots":`+wantSnap+`}]`))
	bc := h.BindingContexts([]Trigger{event(second)}, snaps)
	snap, _ := json.Marshal(bc[0].Snapshots)
	assertJSONEqual(t, snap, []byte(wantSnap))
}

// A re-Synchronization (pending events replaced past the cap) is a
// Synchronization context whose objects are the binding's snapshot when
// the run starts, not the (empty) objects of its trigger.
func TestResyncTriggerReadsTheSnapshot(t *testing.T) {
	h, err := FromConfig(t.TempDir(), "h", []byte("configVersion: v1\nkubernetes:\n- {name: cms, kind: ConfigMap}\n"), LoadOptions{Package: "p", PackageKey: "ns.p"})
	if err != nil {
		t.Fatal(err)
	}
	id := h.Config.Kubernetes[0].Monitor.ID
	a := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "a"}}}
	snaps := snapshotMap{id: {{Object: a}}}
	trig := Trigger{Type: Kubernetes, Binding: "cms", Resync: true, Event: &kubeevents.Event{MonitorID: id, Binding: "cms", Type: kubeevents.TypeSynchronization}}
	got, _ := json.Marshal(h.BindingContexts([]Trigger{trig}, snaps))
	objA, _ := json.Marshal(a.Object)
	assertJSONEqual(t, got, []byte(`[{"binding":"cms","type":"Synchronization","objects":[{"object":`+string(objA)+`}]}]`))
}
