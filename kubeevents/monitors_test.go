package kubeevents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// The coordinator adds the Monitors to controller-runtime's manager as a
// leader-only Runnable (manager.Runnable and LeaderElectionRunnable).
var _ interface {
	Start(context.Context) error
	NeedLeaderElection() bool
} = (*Monitors)(nil)

// deadline bounds every wait so that a broken monitor fails the test
// instead of hanging it; it is not a performance assertion.
const deadline = 30 * time.Second

func startMonitors(t *testing.T, log logr.Logger) *Monitors {
	t.Helper()
	m, err := New(Options{Config: env.Config, Logger: log, KindRetryMin: 100 * time.Millisecond, KindRetryMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Start(context.Background()) }()
	t.Cleanup(func() {
		m.Stop()
		if err := <-done; err != nil {
			t.Errorf("Start returned %v", err)
		}
	})
	return m
}

func addAndStart(t *testing.T, m *Monitors, cfg Config) {
	t.Helper()
	if err := m.AddMonitor(context.Background(), cfg); err != nil {
		t.Fatalf("AddMonitor: %v", err)
	}
	if err := m.StartMonitor(cfg.ID); err != nil {
		t.Fatalf("StartMonitor: %v", err)
	}
}

func next(t *testing.T, m *Monitors) Event {
	t.Helper()
	select {
	case ev, ok := <-m.Events():
		if !ok {
			t.Fatal("Events channel closed")
		}
		return ev
	case <-time.After(deadline):
		t.Fatal("no event arrived")
	}
	return Event{}
}

func configMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
}

func update(t *testing.T, o client.Object, change func()) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
		t.Fatalf("get %s: %v", o.GetName(), err)
	}
	change()
	if err := env.Client.Update(ctx, o); err != nil {
		t.Fatalf("update %s: %v", o.GetName(), err)
	}
}

func names(objs []ObjectAndFilterResult) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Object.GetNamespace()+"/"+o.Object.GetName())
	}
	return out
}

func eventString(ev Event) string {
	s := fmt.Sprintf("%s %s %s", ev.MonitorID, ev.Type, ev.WatchEvent)
	for _, o := range ev.Objects {
		if o.Object != nil {
			s += " " + o.Object.GetNamespace() + "/" + o.Object.GetName()
		}
		if o.FilterResult != nil {
			s += " " + string(o.FilterResult)
		}
	}
	return s
}

func expect(t *testing.T, m *Monitors, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := eventString(next(t, m)); got != w {
			t.Fatalf("event = %q, want %q", got, w)
		}
	}
}

func TestSynchronizationThenEvents(t *testing.T) {
	ns := env.Namespace(t)
	create(t, configMap(ns, "b", nil), configMap(ns, "a", nil))
	m := startMonitors(t, logr.Discard())
	addAndStart(t, m, Config{
		ID: "pkg/hook/cms", Binding: "cms", APIVersion: "v1", Kind: "configmap",
		Namespace:                    &NamespaceSelector{MatchNames: []string{ns}},
		ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true,
	})
	sync := next(t, m)
	if sync.Type != TypeSynchronization || sync.Binding != "cms" {
		t.Fatalf("first event = %s, want Synchronization of binding cms", eventString(sync))
	}
	// envtest runs no controller-manager, so no kube-root-ca.crt appears.
	if got, want := strings.Join(names(sync.Objects), ","), ns+"/a,"+ns+"/b"; got != want {
		t.Fatalf("Synchronization objects = %s, want %s", got, want)
	}

	c := configMap(ns, "c", map[string]string{"k": "1"})
	create(t, c)
	update(t, c, func() { c.Data["k"] = "2" })
	if err := env.Client.Delete(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	expect(t, m,
		"pkg/hook/cms Event Added "+ns+"/c",
		"pkg/hook/cms Event Modified "+ns+"/c",
		"pkg/hook/cms Event Deleted "+ns+"/c",
	)
	if got, want := strings.Join(names(m.Snapshot("pkg/hook/cms")), ","), ns+"/a,"+ns+"/b"; got != want {
		t.Fatalf("Snapshot = %s, want %s", got, want)
	}
}

func TestAddMonitorRejectsBadConfig(t *testing.T) {
	m := startMonitors(t, logr.Discard())
	if err := m.AddMonitor(context.Background(), Config{ID: "dup", APIVersion: "v1", Kind: "ConfigMap"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		is      error
		mention []string
	}{
		{"unknown kind in core", Config{ID: "x", APIVersion: "v1", Kind: "ConfigMapz"}, ErrUnknownKind, []string{"x", `"ConfigMapz"`, `"v1"`}},
		{"unknown kind without apiVersion", Config{ID: "x", Kind: "Gizmo"}, ErrUnknownKind, []string{`"Gizmo"`}},
		{"unknown kind in a served group", Config{ID: "x", APIVersion: "apps/v1", Kind: "Gizmo"}, ErrUnknownKind, []string{`"Gizmo"`, `"apps/v1"`}},
		// A group served at other versions is a mistake, not a CRD to come.
		{"group served at other versions", Config{ID: "x", APIVersion: "events.k8s.io/v1beta1", Kind: "Event"}, ErrUnknownKind, []string{"x", "events.k8s.io/v1beta1 is not served; served versions of events.k8s.io: v1"}},
		{"core group at another version", Config{ID: "x", APIVersion: "v2", Kind: "ConfigMap"}, ErrUnknownKind, []string{"v2 is not served; served versions of the core group: v1"}},
		{"misspelled kind at a wrong version", Config{ID: "x", APIVersion: "apps/v2", Kind: "Deploymnt"}, ErrUnknownKind, []string{"apps/v2 is not served; served versions of apps: v1"}},
		{"jqFilter does not compile", Config{ID: "x", APIVersion: "v1", Kind: "ConfigMap", JqFilter: ".data | ("}, nil, []string{"x", `jqFilter ".data | ("`}},
		{"jqFilter names an unknown function", Config{ID: "x", APIVersion: "v1", Kind: "ConfigMap", JqFilter: "nosuchfn(1)"}, nil, []string{"nosuchfn"}},
		{"no ID", Config{APIVersion: "v1", Kind: "ConfigMap", Binding: "b1"}, ErrInvalidConfig, []string{"ID", `"b1"`}},
		{"no kind", Config{ID: "x", APIVersion: "v1"}, ErrInvalidConfig, []string{"kind"}},
		{"bad apiVersion", Config{ID: "x", APIVersion: "a/b/c", Kind: "ConfigMap"}, nil, []string{`"a/b/c"`}},
		{"bad label selector", Config{ID: "x", APIVersion: "v1", Kind: "ConfigMap", LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Sometimes"}}}}, ErrInvalidConfig, []string{"labelSelector"}},
		{"bad field selector", Config{ID: "x", APIVersion: "v1", Kind: "ConfigMap", FieldSelector: "metadata.name"}, ErrInvalidConfig, []string{"fieldSelector"}},
		{"bad watch event", Config{ID: "x", APIVersion: "v1", Kind: "ConfigMap", ExecuteHookOnEvent: []WatchEvent{"Touched"}}, ErrInvalidConfig, []string{"executeHookOnEvent", "Touched"}},
		{"empty namespace name", Config{ID: "x", APIVersion: "v1", Kind: "ConfigMap", Namespace: &NamespaceSelector{MatchNames: []string{""}}}, ErrInvalidConfig, []string{"namespace.nameSelector"}},
		{"duplicate ID", Config{ID: "dup", APIVersion: "v1", Kind: "ConfigMap"}, ErrMonitorExists, []string{"dup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.AddMonitor(context.Background(), tt.cfg)
			if err == nil {
				t.Fatal("AddMonitor accepted the config")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, s := range tt.mention {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
		})
	}
	if got := m.MonitorIDs(); strings.Join(got, ",") != "dup" {
		t.Fatalf("monitors after rejected configs = %v, want only dup", got)
	}
	if err := m.StartMonitor("nope"); !errors.Is(err, ErrMonitorNotFound) {
		t.Fatalf("StartMonitor(unknown) = %v, want ErrMonitorNotFound", err)
	}
}

func TestKindSpellings(t *testing.T) {
	ns := env.Namespace(t)
	create(t, configMap(ns, "one", nil))
	m := startMonitors(t, logr.Discard())
	for i, kind := range []string{"ConfigMap", "configmap", "CONFIGMAP", "configmaps", "cm", "ConfigMaps"} {
		for _, apiVersion := range []string{"v1", ""} {
			id := fmt.Sprintf("k%d-%q", i, apiVersion)
			addAndStart(t, m, Config{ID: id, APIVersion: apiVersion, Kind: kind, Namespace: &NamespaceSelector{MatchNames: []string{ns}}, ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
			ev := next(t, m)
			if ev.MonitorID != id || ev.Type != TypeSynchronization || len(ev.Objects) != 1 || ev.Objects[0].Object.GetKind() != "ConfigMap" {
				t.Fatalf("kind %q apiVersion %q: event %s, want a Synchronization with the one ConfigMap", kind, apiVersion, eventString(ev))
			}
		}
	}
}

func TestJqFilterSuppressesUnchangedResults(t *testing.T) {
	ns := env.Namespace(t)
	c := configMap(ns, "cm", map[string]string{"key": "1", "other": "x"})
	create(t, c)
	m := startMonitors(t, logr.Discard())
	addAndStart(t, m, Config{ID: "f", APIVersion: "v1", Kind: "ConfigMap", JqFilter: ".data.key",
		Namespace: &NamespaceSelector{MatchNames: []string{ns}}, ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	expect(t, m, "f Synchronization  "+ns+`/cm "1"`)

	update(t, c, func() { c.Data["other"] = "y" })                  // filter result unchanged: nothing
	update(t, c, func() { c.Labels = map[string]string{"a": "b"} }) // nothing
	update(t, c, func() { c.Data["key"] = "2" })
	expect(t, m, "f Event Modified "+ns+`/cm "2"`)
	if err := env.Client.Delete(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	expect(t, m, "f Event Deleted "+ns+`/cm "2"`)
}

func TestExecuteHookOnEventAndKeepFullObjects(t *testing.T) {
	ns := env.Namespace(t)
	create(t, configMap(ns, "a", map[string]string{"v": "1"}))
	m := startMonitors(t, logr.Discard())
	addAndStart(t, m, Config{ID: "del", APIVersion: "v1", Kind: "ConfigMap", JqFilter: "{name: .metadata.name, v: .data.v}",
		Namespace:          &NamespaceSelector{MatchNames: []string{ns}},
		ExecuteHookOnEvent: []WatchEvent{WatchEventDeleted}, ExecuteHookOnSynchronization: false, KeepFullObjectsInMemory: false})
	eventually.True(t, deadline, "monitor del to be synced", func() bool { return m.Synced("del") })
	snap := m.Snapshot("del")
	if len(snap) != 1 || snap[0].Object != nil || string(snap[0].FilterResult) != `{"name":"a","v":"1"}` {
		t.Fatalf("snapshot = %+v, want only the filter result of a", snap)
	}
	b := configMap(ns, "b", map[string]string{"v": "1"})
	create(t, b)
	update(t, b, func() { b.Data["v"] = "2" })
	if err := env.Client.Delete(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	// Neither the Synchronization, nor Added, nor Modified were asked for.
	ev := next(t, m)
	if ev.Type != TypeEvent || ev.WatchEvent != WatchEventDeleted || ev.Objects[0].Object.GetName() != "b" {
		t.Fatalf("first event = %s, want Deleted b", eventString(ev))
	}
	if string(ev.Objects[0].FilterResult) != `{"name":"b","v":"2"}` {
		t.Fatalf("filter result = %s", ev.Objects[0].FilterResult)
	}
}

func TestSelectors(t *testing.T) {
	ns := env.Namespace(t)
	lbl := map[string]string{"app": "x"}
	objs := []*corev1.ConfigMap{configMap(ns, "a", nil), configMap(ns, "b", nil), configMap(ns, "c", nil), configMap(ns, "d", nil)}
	objs[0].Labels, objs[1].Labels, objs[3].Labels = lbl, lbl, lbl
	for _, o := range objs {
		create(t, o)
	}
	m := startMonitors(t, logr.Discard())
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"label selector", Config{LabelSelector: &metav1.LabelSelector{MatchLabels: lbl}}, "a,b,d"},
		{"names", Config{NameSelector: []string{"c", "b"}}, "b,c"},
		{"names and labels", Config{NameSelector: []string{"a", "c"}, LabelSelector: &metav1.LabelSelector{MatchLabels: lbl}}, "a"},
		{"field selector", Config{FieldSelector: "metadata.name!=a"}, "b,c,d"},
		{"names and field selector", Config{NameSelector: []string{"a", "b"}, FieldSelector: "metadata.name!=a"}, "b"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.ID, cfg.APIVersion, cfg.Kind = fmt.Sprint("sel", i), "v1", "ConfigMap"
			cfg.Namespace = &NamespaceSelector{MatchNames: []string{ns}}
			cfg.ExecuteHookOnSynchronization, cfg.KeepFullObjectsInMemory = true, true
			addAndStart(t, m, cfg)
			ev := next(t, m)
			var got []string
			for _, o := range ev.Objects {
				got = append(got, o.Object.GetName())
			}
			if strings.Join(got, ",") != tt.want {
				t.Fatalf("Synchronization objects = %v, want %s", got, tt.want)
			}
		})
	}
}

func TestNamespaceLabelSelector(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	key := "watch-" + nsA
	labelNS(t, nsA, map[string]string{key: "yes"})
	create(t, configMap(nsA, "a1", nil), configMap(nsB, "b1", nil))
	m := startMonitors(t, logr.Discard())
	addAndStart(t, m, Config{ID: "nsl", APIVersion: "v1", Kind: "ConfigMap",
		Namespace:                    &NamespaceSelector{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: "yes"}}},
		ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	expect(t, m, "nsl Synchronization  "+nsA+"/a1")

	labelNS(t, nsB, map[string]string{key: "yes"})
	expect(t, m, "nsl Event Added "+nsB+"/b1")
	create(t, configMap(nsB, "b2", nil))
	expect(t, m, "nsl Event Added "+nsB+"/b2")

	labelNS(t, nsA, map[string]string{key: "no"})
	eventually.True(t, deadline, "the snapshot of nsl to hold only "+nsB+"'s b1 and b2", func() bool {
		return strings.Join(names(m.Snapshot("nsl")), ",") == nsB+"/b1,"+nsB+"/b2"
	})
	create(t, configMap(nsA, "a2", nil), configMap(nsB, "b3", nil))
	// a2 is in a namespace no longer watched: the next event is b3's.
	expect(t, m, "nsl Event Added "+nsB+"/b3")
}

func labelNS(t *testing.T, name string, l map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	update(t, ns, func() { ns.Labels = l })
}

func TestClusterScopedKind(t *testing.T) {
	ns := env.Namespace(t)
	m := startMonitors(t, logr.Discard())
	addAndStart(t, m, Config{ID: "ns", APIVersion: "v1", Kind: "ns", NameSelector: []string{ns},
		JqFilter: ".metadata.labels.team", ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	expect(t, m, "ns Synchronization  /"+ns+" null")
	labelNS(t, ns, map[string]string{"team": "blue"})
	expect(t, m, `ns Event Modified /`+ns+` "blue"`)
}

func TestPauseResumeLosesNothing(t *testing.T) {
	ns := env.Namespace(t)
	m := startMonitors(t, logr.Discard())
	addAndStart(t, m, Config{ID: "p", APIVersion: "v1", Kind: "ConfigMap", Namespace: &NamespaceSelector{MatchNames: []string{ns}},
		ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	expect(t, m, "p Synchronization ")
	m.PauseHandleEvents()
	const n = 20
	for i := range n {
		create(t, configMap(ns, fmt.Sprintf("cm-%02d", i), nil))
	}
	eventually.True(t, deadline, fmt.Sprintf("%d pending events", n), func() bool { return m.Pending() == n })
	select {
	case ev := <-m.Events():
		t.Fatalf("event %s delivered during the pause", eventString(ev))
	default:
	}
	m.ResumeHandleEvents()
	for i := range n {
		expect(t, m, fmt.Sprintf("p Event Added %s/cm-%02d", ns, i))
	}
}

func TestStopAndRestartMonitor(t *testing.T) {
	ns := env.Namespace(t)
	create(t, configMap(ns, "a", nil))
	m := startMonitors(t, logr.Discard())
	cfg := Config{ID: "r", APIVersion: "v1", Kind: "ConfigMap", Namespace: &NamespaceSelector{MatchNames: []string{ns}},
		ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true}
	addAndStart(t, m, cfg)
	expect(t, m, "r Synchronization  "+ns+"/a")
	if err := m.StopMonitor("r"); err != nil {
		t.Fatal(err)
	}
	if s := m.Snapshot("r"); len(s) != 0 {
		t.Fatalf("snapshot of a stopped monitor = %v", names(s))
	}
	create(t, configMap(ns, "b", nil))
	if err := m.StartMonitor("r"); err != nil {
		t.Fatal(err)
	}
	expect(t, m, "r Synchronization  "+ns+"/a "+ns+"/b")
	if err := m.RemoveMonitor("r"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveMonitor("r"); !errors.Is(err, ErrMonitorNotFound) {
		t.Fatalf("second RemoveMonitor = %v", err)
	}
	// The ID is free again.
	if err := m.AddMonitor(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}

func TestKindWhoseCRDIsCreatedLater(t *testing.T) {
	ns := env.Namespace(t)
	logs := &logSink{}
	m := startMonitors(t, funcr.New(logs.add, funcr.Options{}))
	group := "later.gadgetpm.io"
	addAndStart(t, m, Config{ID: "w", APIVersion: group + "/v1", Kind: "widget", Namespace: &NamespaceSelector{MatchNames: []string{ns}},
		ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	eventually.True(t, deadline, "the log to say it waits for the kind to be served", func() bool { return logs.contains(`"waiting for kind to be served"`) })
	// The wait says why, so that a typo does not look like a hang.
	if why := m.WaitingForKind("w"); !strings.Contains(why, "API group later.gadgetpm.io is not served") {
		t.Errorf("WaitingForKind = %q, want the unserved group named", why)
	}

	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList", ShortNames: []string{"wdg"}},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr(true),
				}},
			}},
		},
	}
	create(t, crd)
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), crd) })
	expect(t, m, "w Synchronization ")
	if why := m.WaitingForKind("w"); why != "" {
		t.Errorf("WaitingForKind = %q once the kind is served", why)
	}
	if !logs.contains(`"kind is served now; starting to watch"`) {
		t.Errorf("no log line says the kind is served now; logs:\n%s", logs.String())
	}
	w := &unstructured.Unstructured{}
	w.SetAPIVersion(group + "/v1")
	w.SetKind("Widget")
	w.SetNamespace(ns)
	w.SetName("w1")
	create(t, w)
	expect(t, m, "w Event Added "+ns+"/w1")
	// Its short name works once served, too.
	addAndStart(t, m, Config{ID: "w2", APIVersion: group + "/v1", Kind: "wdg", Namespace: &NamespaceSelector{MatchNames: []string{ns}},
		ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	expect(t, m, "w2 Synchronization  "+ns+"/w1")
}

func TestStopClosesEvents(t *testing.T) {
	m, err := New(Options{Config: env.Config})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- m.Start(ctx) }()
	if err := m.AddMonitor(ctx, Config{ID: "a", APIVersion: "v1", Kind: "ConfigMap"}); err != nil {
		t.Fatal(err)
	}
	if err := m.StartMonitor("a"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := <-m.Events(); ok {
		t.Fatal("Events still open after Start returned")
	}
	m.Stop()
	m.Stop()
	if err := m.StartMonitor("a"); err == nil {
		t.Fatal("StartMonitor after Stop succeeded")
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a Config succeeded")
	}
}

func ptr[T any](v T) *T { return &v }

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, prefix+" "+args)
}

func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestResyncReevaluatesTheFilter(t *testing.T) {
	ns := env.Namespace(t)
	create(t, configMap(ns, "a", nil))
	m := startMonitors(t, logr.Discard())
	// The filter's result changes with time only, so only a resync can
	// notice: a Modified event without any write proves the resync ran.
	addAndStart(t, m, Config{ID: "rs", APIVersion: "v1", Kind: "ConfigMap", JqFilter: "now | floor",
		Namespace: &NamespaceSelector{MatchNames: []string{ns}}, ResyncPeriod: 300 * time.Millisecond,
		ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	if ev := next(t, m); ev.Type != TypeSynchronization {
		t.Fatalf("first event = %s", eventString(ev))
	}
	ev := next(t, m)
	if ev.Type != TypeEvent || ev.WatchEvent != WatchEventModified || ev.Objects[0].Object.GetName() != "a" {
		t.Fatalf("event after resync = %s, want Modified a", eventString(ev))
	}
}

func TestNoEventsWhenNoneAreWanted(t *testing.T) {
	ns := env.Namespace(t)
	m := startMonitors(t, logr.Discard())
	addAndStart(t, m, Config{ID: "none", APIVersion: "v1", Kind: "ConfigMap", Namespace: &NamespaceSelector{MatchNames: []string{ns}},
		ExecuteHookOnEvent: []WatchEvent{}, ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	addAndStart(t, m, Config{ID: "marker", APIVersion: "v1", Kind: "ConfigMap", NameSelector: []string{"marker"},
		Namespace: &NamespaceSelector{MatchNames: []string{ns}}, KeepFullObjectsInMemory: true})
	eventually.True(t, deadline, "monitors none and marker to be synced", func() bool { return m.Synced("none") && m.Synced("marker") })
	if ev := next(t, m); ev.MonitorID != "none" || ev.Type != TypeSynchronization {
		t.Fatalf("first event = %s, want the Synchronization of none", eventString(ev))
	}
	c := configMap(ns, "c", map[string]string{"a": "1"})
	create(t, c)
	update(t, c, func() { c.Data["a"] = "2" })
	eventually.True(t, deadline, "the snapshot of none to hold c's update", func() bool {
		s := m.Snapshot("none")
		return len(s) == 1 && s[0].Object.GetResourceVersion() == c.ResourceVersion
	})
	create(t, configMap(ns, "marker", nil))
	// Events of one manager leave in order; the marker's Added event
	// comes first only when "none" sent nothing for c.
	expect(t, m, "marker Event Added "+ns+"/marker")
}

func TestConcurrentMonitorLifecycle(t *testing.T) {
	ns := env.Namespace(t)
	m := startMonitors(t, logr.Discard())
	// Drain events so that nothing blocks on a reader.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range m.Events() {
		}
	}()
	const monitors = 4
	for i := range monitors {
		if err := m.AddMonitor(context.Background(), Config{ID: fmt.Sprint("c", i), APIVersion: "v1", Kind: "ConfigMap",
			Namespace: &NamespaceSelector{MatchNames: []string{ns}}, ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: i%2 == 0}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range monitors {
		id := fmt.Sprint("c", i)
		wg.Go(func() {
			for range 5 {
				if err := m.StartMonitor(id); err != nil {
					t.Error(err)
					return
				}
				_ = m.Snapshot(id)
				if i%2 == 0 {
					m.PauseHandleEvents()
					m.ResumeHandleEvents()
				}
				if err := m.StopMonitor(id); err != nil {
					t.Error(err)
					return
				}
			}
			if err := m.StartMonitor(id); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		for j := range 20 {
			cm := configMap(ns, fmt.Sprint("x", j), nil)
			if err := env.Client.Create(context.Background(), cm); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	for i := range monitors {
		id := fmt.Sprint("c", i)
		eventually.True(t, deadline, "monitor "+id+" to be synced with 20 objects", func() bool { return m.Synced(id) && len(m.Snapshot(id)) == 20 })
	}
	m.Stop()
	<-drained
}

func TestNewCopiesTheConfig(t *testing.T) {
	qps, burst := env.Config.QPS, env.Config.Burst
	m, err := New(Options{Config: env.Config, QPS: 7, Burst: 9})
	if err != nil {
		t.Fatal(err)
	}
	if env.Config.QPS != qps || env.Config.Burst != burst {
		t.Fatalf("New changed the caller's config to QPS %v burst %d", env.Config.QPS, env.Config.Burst)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	eventually.True(t, deadline, "the manager to start", func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.started })
	if err := m.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFilterFailingOnOneObjectAffectsNothingElse(t *testing.T) {
	ns := env.Namespace(t)
	create(t, configMap(ns, "good", map[string]string{"n": "1"}), configMap(ns, "bad", map[string]string{"n": "one"}))
	logs := &logSink{}
	m := startMonitors(t, funcr.New(logs.add, funcr.Options{}))
	addAndStart(t, m, Config{ID: "num", APIVersion: "v1", Kind: "ConfigMap", JqFilter: ".data.n | tonumber",
		Namespace: &NamespaceSelector{MatchNames: []string{ns}}, ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true})
	expect(t, m, "num Synchronization  "+ns+"/good 1")
	if !logs.contains(`"name"="bad"`) || !logs.contains("jqFilter failed") {
		t.Fatalf("the failing object is not logged by name; logs:\n%s", logs.String())
	}
	bad := configMap(ns, "bad", nil)
	update(t, bad, func() { bad.Data["n"] = "2" })
	expect(t, m, "num Event Added "+ns+"/bad 2")
}
