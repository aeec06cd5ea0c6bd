package hooks

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/kubeevents"
)

func TestParseConfigDefaultsAndAliases(t *testing.T) {
	yamlCfg := `
configVersion: v1
onStartup: 10
beforeHelm: 1
afterHelm: 2.5
afterDeleteHelm: 3
settings:
  executionMinInterval: 3s
  executionBurst: 2
schedule:
- crontab: "*/5 * * * *"
- name: every-sec
  crontab: "*/1 * * * * *"
  allowFailure: true
  queue: slow
  group: g
  includeSnapshotsFrom: [pods]
- name: tz
  crontab: "CRON_TZ=Europe/Berlin 0 3 * * *"
- name: desc
  crontab: "@every 1m"
kubernetes:
- name: pods
  kind: Pod
- name: old-events
  apiVersion: apps/v1
  kind: deployments
  watchEvent: [add, update, delete]
  executeHookOnSynchronization: false
  waitForSynchronization: false
  keepFullObjectsInMemory: false
  jqFilter: .metadata.labels
  nameSelector: {matchNames: [a, b]}
  labelSelector: {matchLabels: {app: x}}
  fieldSelector:
    matchExpressions:
    - {field: metadata.name, operator: Equals, value: a}
    - {field: status.phase, operator: "!=", value: Failed}
  namespace:
    nameSelector: {matchNames: [default]}
    labelSelector: {matchLabels: {team: t}}
  resynchronizationPeriod: 10m
  group: g
- name: none
  kind: cm
  executeHookOnEvent: []
`
	cfg, err := ParseConfig("10-hook", []byte(yamlCfg))
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.OnStartup != 10 || *cfg.BeforeHelm != 1 || *cfg.AfterHelm != 2.5 || *cfg.AfterDeleteHelm != 3 {
		t.Errorf("orders: %v %v %v %v", *cfg.OnStartup, *cfg.BeforeHelm, *cfg.AfterHelm, *cfg.AfterDeleteHelm)
	}
	if cfg.Settings != (Settings{ExecutionMinInterval: 3 * time.Second, ExecutionBurst: 2}) {
		t.Errorf("settings: %+v", cfg.Settings)
	}
	if len(cfg.Schedules) != 4 || cfg.Schedules[0].Name != "schedule" {
		t.Fatalf("an unnamed schedule is named \"schedule\", as in shell-operator: %+v", cfg.Schedules)
	}
	s := cfg.Schedules[1]
	if !s.AllowFailure || s.Queue != "slow" || s.Group != "g" || !reflect.DeepEqual(s.IncludeSnapshotsFrom, []string{"pods"}) {
		t.Errorf("schedule common fields: %+v", s)
	}

	pods := cfg.Kubernetes[0]
	if !pods.WaitForSynchronization || !pods.Monitor.ExecuteHookOnSynchronization || !pods.Monitor.KeepFullObjectsInMemory {
		t.Errorf("defaults must be true: %+v", pods)
	}
	if pods.Monitor.ExecuteHookOnEvent != nil {
		t.Errorf("absent executeHookOnEvent must mean all events (nil), got %v", pods.Monitor.ExecuteHookOnEvent)
	}
	if pods.Monitor.Binding != "pods" || pods.AllowFailure {
		t.Errorf("pods: %+v", pods)
	}

	old := cfg.Kubernetes[1]
	want := kubeevents.Config{
		Binding:                      "old-events",
		APIVersion:                   "apps/v1",
		Kind:                         "deployments",
		NameSelector:                 []string{"a", "b"},
		Namespace:                    &kubeevents.NamespaceSelector{MatchNames: []string{"default"}, LabelSelector: old.Monitor.Namespace.LabelSelector},
		LabelSelector:                old.Monitor.LabelSelector,
		FieldSelector:                "metadata.name=a,status.phase!=Failed",
		JqFilter:                     ".metadata.labels",
		ExecuteHookOnEvent:           []kubeevents.WatchEvent{kubeevents.WatchEventAdded, kubeevents.WatchEventModified, kubeevents.WatchEventDeleted},
		ExecuteHookOnSynchronization: false,
		KeepFullObjectsInMemory:      false,
		ResyncPeriod:                 10 * time.Minute,
	}
	if !reflect.DeepEqual(old.Monitor, want) {
		t.Errorf("monitor:\n got %+v\nwant %+v", old.Monitor, want)
	}
	if old.Monitor.LabelSelector.MatchLabels["app"] != "x" || old.Monitor.Namespace.LabelSelector.MatchLabels["team"] != "t" {
		t.Errorf("label selectors lost: %+v", old.Monitor)
	}
	if !old.WaitForSynchronization || old.Group != "g" {
		t.Errorf("old-events (waitForSynchronization: false in the main queue is not honoured): %+v", old)
	}
	if none := cfg.Kubernetes[2].Monitor.ExecuteHookOnEvent; none == nil || len(none) != 0 {
		t.Errorf("executeHookOnEvent: [] must mean no events (empty, non-nil), got %#v", none)
	}

	// JSON is accepted as well, and the default burst is 1.
	js, err := ParseConfig("h", []byte(`{"configVersion":"v1","kubernetes":[{"kind":"Pod","watchEvent":["Added","Deleted"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if js.Settings.ExecutionBurst != 1 || js.Kubernetes[0].Name != "kubernetes" {
		t.Errorf("JSON config: %+v", js)
	}
	if got := js.Kubernetes[0].Monitor.ExecuteHookOnEvent; !reflect.DeepEqual(got, []kubeevents.WatchEvent{"Added", "Deleted"}) {
		t.Errorf("watchEvent alias: %v", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"hook h", "printed nothing"}},
		{"not yaml", "configVersion: v1\n  : : [", []string{"hook h", "neither YAML nor JSON"}},
		{"a list", "- a\n- b", []string{"is a list", "configVersion: v1"}},
		{"no version", "onStartup: 1", []string{"field configVersion", "missing"}},
		{"old version", "configVersion: v0\nonStartup: 1", []string{"field configVersion", "unsupported version v0"}},
		{"unknown binding", "configVersion: v1\nonShutdown: 1", []string{"field onShutdown", "unknown binding"}},
		{"webhook binding", "configVersion: v1\nkubernetesValidating: []", []string{"field kubernetesValidating", "not supported", "admission"}},
		{"global binding", "configVersion: v1\nbeforeAll: 1", []string{"field beforeAll", "use beforeHelm"}},
		{"order not number", "configVersion: v1\nonStartup: soon", []string{"binding onStartup", "ORDER"}},
		{"bad cron", "configVersion: v1\nschedule:\n- name: s\n  crontab: '61 * * * *'", []string{`binding schedule[0] "s"`, "field crontab", "not a cron spec"}},
		{"missing cron", "configVersion: v1\nschedule:\n- name: s", []string{"field crontab", "missing"}},
		{"schedule not list", "configVersion: v1\nschedule: every day", []string{"binding schedule", "expected a list"}},
		{"unknown schedule field", "configVersion: v1\nschedule:\n- crontab: '* * * * *'\n  cron: x", []string{"binding schedule[0]", "field cron", "unknown field"}},
		{"missing kind", "configVersion: v1\nkubernetes:\n- name: k", []string{`kubernetes[0] "k"`, "field kind", "missing"}},
		{"bad apiVersion", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  apiVersion: a/b/c", []string{"field apiVersion"}},
		{"jq does not compile", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  jqFilter: '.metadata | foo('", []string{`kubernetes[0] "k"`, "field jqFilter", "does not compile"}},
		{"jq unknown function", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  jqFilter: 'nosuchfn(1)'", []string{"field jqFilter", "does not compile"}},
		{"bad event", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  executeHookOnEvent: [Created]", []string{"field executeHookOnEvent[0]", `"Created"`, "Added, Modified or Deleted"}},
		{"bad watchEvent", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  watchEvent: [remove]", []string{"field watchEvent[0]"}},
		{"bad label selector", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  labelSelector: {matchExpressions: [{key: a, operator: Sometimes}]}", []string{"field labelSelector"}},
		{"bad field operator", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  fieldSelector: {matchExpressions: [{field: a, operator: In, value: b}]}", []string{"field fieldSelector.matchExpressions[0].operator"}},
		{"bool as string", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  allowFailure: maybe", []string{"kubernetes[0]", "field allowFailure", "true or false"}},
		{"unknown snapshot", "configVersion: v1\nschedule:\n- name: s\n  crontab: '* * * * *'\n  includeSnapshotsFrom: [nope]", []string{`schedule[0] "s"`, "field includeSnapshotsFrom", `"nope"`}},
		{"bad resync", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  resynchronizationPeriod: often", []string{"field resynchronizationPeriod"}},
		{"bad interval", "configVersion: v1\nsettings: {executionMinInterval: fast}", []string{"binding settings", "field executionMinInterval"}},
		{"bad burst", "configVersion: v1\nsettings: {executionBurst: 0}", []string{"field executionBurst", "at least 1"}},
		{"reserved queue on a schedule", "configVersion: v1\nschedule:\n- name: s\n  crontab: '@hourly'\n  queue: synchronization", []string{`binding schedule[0] "s"`, "field queue", `"synchronization" is reserved`}},
		{"reserved queue on a kubernetes binding", "configVersion: v1\nkubernetes:\n- name: k\n  kind: Pod\n  queue: ' synchronization '", []string{`binding kubernetes[0] "k"`, "field queue", `"synchronization" is reserved`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig("h", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestHookBindings(t *testing.T) {
	cfg, err := ParseConfig("h", []byte("configVersion: v1\nonStartup: 1\nafterHelm: 1\nschedule:\n- {name: s, crontab: '@hourly'}\nkubernetes:\n- {name: k, kind: Pod}"))
	if err != nil {
		t.Fatal(err)
	}
	h := &Hook{Name: "h", Config: cfg}
	want := []string{"onStartup", "afterHelm", "schedule:s", "kubernetes:k"}
	if got := h.Bindings(); !reflect.DeepEqual(got, want) {
		t.Errorf("Bindings() = %v, want %v", got, want)
	}
}

func TestOrdered(t *testing.T) {
	mk := func(name, cfg string) *Hook {
		c, err := ParseConfig(name, []byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		return &Hook{Name: name, Config: c}
	}
	hooks := []*Hook{
		mk("c", "configVersion: v1\nonStartup: 1\nafterHelm: 5"),
		mk("a", "configVersion: v1\nonStartup: 10"),
		mk("b", "configVersion: v1\nonStartup: 1"),
		mk("d", "configVersion: v1\nschedule: [{crontab: '@daily'}]"),
	}
	names := func(hs []*Hook) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.Name)
		}
		return out
	}
	if got := names(Ordered(hooks, OnStartup)); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Errorf("onStartup order %v", got)
	}
	if got := names(Ordered(hooks, AfterHelm)); !reflect.DeepEqual(got, []string{"c"}) {
		t.Errorf("afterHelm order %v", got)
	}
	if got := Ordered(hooks, Schedule); got != nil {
		t.Errorf("schedule has no ORDER, got %v", names(got))
	}
}

func TestParseConfigEmptyNamespaceMeansAll(t *testing.T) {
	cfg, err := ParseConfig("h", []byte("configVersion: v1\nkubernetes:\n- {name: k, kind: Pod, namespace: {}}"))
	if err != nil {
		t.Fatal(err)
	}
	if ns := cfg.Kubernetes[0].Monitor.Namespace; ns != nil {
		t.Errorf("namespace: {} must mean all namespaces (nil), got %+v", ns)
	}
}

// TestParseConfigShellOperatorNamesAndWait follows shell-operator's
// pkg/hook/config/config_v1.go: unnamed bindings are named after their type,
// names may repeat, and waitForSynchronization: false counts only for a
// binding in a named queue.
func TestParseConfigShellOperatorNamesAndWait(t *testing.T) {
	// An unmodified shell-operator style config: two unnamed kubernetes
	// bindings, an unnamed schedule, a repeated name.
	cfg, err := ParseConfig("h", []byte(`
configVersion: v1
schedule:
- crontab: "*/5 * * * *"
- crontab: "0 * * * *"
  queue: hourly
kubernetes:
- kind: Pod
- kind: ConfigMap
  executeHookOnEvent: [Added]
- name: nodes
  kind: Node
- name: nodes
  kind: Node
  labelSelector: {matchLabels: {role: edge}}
  includeSnapshotsFrom: [nodes, kubernetes]
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range cfg.Schedules {
		names = append(names, b.Name)
	}
	for _, b := range cfg.Kubernetes {
		names = append(names, b.Name+"/"+b.Monitor.Binding)
	}
	if want := []string{"schedule", "schedule", "kubernetes/kubernetes", "kubernetes/kubernetes", "nodes/nodes", "nodes/nodes"}; !reflect.DeepEqual(names, want) {
		t.Errorf("binding names %v, want %v", names, want)
	}
	if cfg.Schedules[1].Queue != "hourly" || cfg.Schedules[0].Queue != "" {
		t.Errorf("queues of the two schedules: %+v", cfg.Schedules)
	}

	// Each binding keeps its own monitor even when names repeat.
	h, err := FromConfig(t.TempDir(), "h", []byte(`{"configVersion":"v1","kubernetes":[{"kind":"Pod"},{"kind":"ConfigMap"},{"name":"x","kind":"Node"}]}`), LoadOptions{Package: "p", PackageKey: "ns.p"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range h.Config.Kubernetes {
		ids = append(ids, b.Monitor.ID)
	}
	if want := []string{"ns.p/h/kubernetes[0]", "ns.p/h/kubernetes[1]", "ns.p/h/x"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("monitor IDs %v, want %v", ids, want)
	}

	for _, tc := range []struct {
		name, binding string
		want          bool
	}{
		{"default", "{kind: Pod}", true},
		{"false in the main queue", "{kind: Pod, waitForSynchronization: false}", true},
		{"false with queue: main", "{kind: Pod, waitForSynchronization: false, queue: main}", true},
		{"false in a named queue", "{kind: Pod, waitForSynchronization: false, queue: slow}", false},
		{"true in a named queue", "{kind: Pod, waitForSynchronization: true, queue: slow}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("h", []byte("configVersion: v1\nkubernetes:\n- "+tc.binding))
			if err != nil {
				t.Fatal(err)
			}
			b := cfg.Kubernetes[0]
			if b.WaitForSynchronization != tc.want {
				t.Errorf("waitForSynchronization %v, want %v", b.WaitForSynchronization, tc.want)
			}
			if strings.Contains(tc.binding, "queue: main") && b.Queue != "" {
				t.Errorf("queue: main must be the main queue, got %q", b.Queue)
			}
		})
	}
}
