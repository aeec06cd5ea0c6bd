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
