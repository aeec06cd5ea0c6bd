package hooks

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

func TestValuesKey(t *testing.T) {
	for in, want := range map[string]string{
		"nettrace":       "nettrace",
		"net-trace":      "netTrace",
		"dns_top":        "dnsTop",
		"tcp-rtt-v2":     "tcpRttV2",
		"a.b-c":          "aBC",
		"-leading":       "leading",
		"trailing-":      "trailing",
		"already-camelX": "alreadyCamelX",
	} {
		if got := ValuesKey(in); got != want {
			t.Errorf("ValuesKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseJSONPatch(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		ops     []string
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"array", `[{"op":"add","path":"/p/a","value":1},{"op":"remove","path":"/p/b"}]`, []string{"add", "remove"}, ""},
		{"lines", "{\"op\":\"add\",\"path\":\"/p/a\",\"value\":1}\n{\"op\":\"replace\",\"path\":\"/p/a\",\"value\":2}\n", []string{"add", "replace"}, ""},
		{"mixed", "[{\"op\":\"add\",\"path\":\"/p/a\",\"value\":1}]\n{\"op\":\"test\",\"path\":\"/p/a\",\"value\":1}", []string{"add", "test"}, ""},
		{"not json", "add /p/a 1", nil, "item 1 is not JSON"},
		{"unknown op", `[{"op":"upsert","path":"/p/a"}]`, nil, `op "upsert" is not one of`},
		{"missing path", `{"op":"remove"}`, nil, "missing path"},
		{"not an object", `[1]`, nil, "not a JSON patch operation object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := ParseJSONPatch([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, op := range ops {
				kinds = append(kinds, op.Kind())
			}
			if !reflect.DeepEqual(kinds, tt.ops) {
				t.Errorf("ops %v, want %v", kinds, tt.ops)
			}
		})
	}
}

const testSchema = `{
  "$schema": "https://json-schema.org/draft-07/schema#",
  "type": "object",
  "required": ["replicas"],
  "properties": {
    "replicas": {"type": "integer", "minimum": 1},
    "mode": {"type": "string", "enum": ["fast", "safe"]},
    "extra": {"type": "object"}
  }
}`

func newTestStore(t *testing.T, w SettingsWriter) *ValuesStore {
	t.Helper()
	s, err := NewValuesStore(ValuesStoreOptions{
		Package:  "net-trace",
		Schema:   []byte(testSchema),
		Defaults: map[string]any{"replicas": 1.0, "mode": "safe", "extra": map[string]any{"a": 1.0}},
		Settings: map[string]any{"mode": "fast", "extra": map[string]any{"b": 2.0}},
		Global:   map[string]any{"clusterName": "c1"},
		Writer:   w,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clusterSettings reads the GadgetPackage key from the API server and
// decodes its settings.
func clusterSettings(t *testing.T, key types.NamespacedName) (map[string]any, *gadgetpmv1alpha1.GadgetPackage) {
	t.Helper()
	got := &gadgetpmv1alpha1.GadgetPackage{}
	if err := env.Client.Get(context.Background(), key, got); err != nil {
		t.Fatal(err)
	}
	var settings map[string]any
	if err := json.Unmarshal(got.Spec.Settings.Raw, &settings); err != nil {
		t.Fatal(err)
	}
	return settings, got
}

func TestValuesStorePatches(t *testing.T) {
	s := newTestStore(t, nil)
	v, err := s.Values()
	if err != nil {
		t.Fatal(err)
	}
	want := Values{"global": map[string]any{"clusterName": "c1"}, "netTrace": map[string]any{"replicas": 1.0, "mode": "fast", "extra": map[string]any{"a": 1.0, "b": 2.0}}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("values %v, want %v", v, want)
	}

	ops, _ := ParseJSONPatch([]byte(`[{"op":"replace","path":"/netTrace/replicas","value":3},{"op":"add","path":"/netTrace/extra/c","value":"x"}]`))
	if err := s.PatchValues(ops); err != nil {
		t.Fatal(err)
	}
	pv, _ := s.PackageValues()
	if pv["replicas"] != 3.0 || pv["extra"].(map[string]any)["c"] != "x" {
		t.Errorf("patched values %v", pv)
	}

	// Rejected by the schema: nothing changes.
	bad, _ := ParseJSONPatch([]byte(`[{"op":"replace","path":"/netTrace/replicas","value":0}]`))
	err = s.PatchValues(bad)
	if err == nil || !strings.Contains(err.Error(), "values.schema.json") || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("schema violation: %v", err)
	}
	if pv, _ := s.PackageValues(); pv["replicas"] != 3.0 {
		t.Errorf("rejected patch changed values: %v", pv)
	}
	removeRequired, _ := ParseJSONPatch([]byte(`{"op":"remove","path":"/netTrace/replicas"}`))
	if err := s.PatchValues(removeRequired); err == nil {
		t.Error("removing a required value passed the schema")
	}

	// Patches may only touch the package's own values.
	for _, p := range []string{
		`{"op":"add","path":"/global/x","value":1}`,
		`{"op":"add","path":"/otherPkg/x","value":1}`,
		`{"op":"add","path":"/netTraceX","value":1}`,
		`{"op":"move","from":"/global/clusterName","path":"/netTrace/name"}`,
	} {
		ops, err := ParseJSONPatch([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PatchValues(ops); err == nil || !strings.Contains(err.Error(), "must start with /netTrace/") {
			t.Errorf("%s: %v", p, err)
		}
	}

	// Settings change later; hook patches stay on top.
	if err := s.SetSettings(map[string]any{"mode": "safe"}); err != nil {
		t.Fatal(err)
	}
	if pv, _ := s.PackageValues(); pv["replicas"] != 3.0 || pv["mode"] != "safe" {
		t.Errorf("after SetSettings: %v", pv)
	}
	if err := s.SetSettings(map[string]any{"mode": "reckless"}); err == nil {
		t.Error("settings violating the schema were accepted")
	}
}

func TestValuesStoreConfigPatchPersistsSettings(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	pkg := &gadgetpmv1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "net-trace"},
		Spec: gadgetpmv1alpha1.GadgetPackageSpec{
			Repository: "main", Package: "net-trace",
			Settings: &apiextensionsv1.JSON{Raw: []byte(`{"mode":"fast","extra":{"b":2}}`)},
		},
	}
	if err := env.Client.Create(ctx, pkg); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: ns, Name: "net-trace"}
	s := newTestStore(t, GadgetPackageSettings{Client: env.Client, Key: key})

	ops, _ := ParseJSONPatch([]byte(`[{"op":"remove","path":"/netTrace/extra"},{"op":"add","path":"/netTrace/replicas","value":2}]`))
	if err := s.PatchConfigValues(ctx, ops); err != nil {
		t.Fatal(err)
	}
	settings, got := clusterSettings(t, key)
	if want := map[string]any{"mode": "fast", "replicas": 2.0}; !reflect.DeepEqual(settings, want) {
		t.Errorf("persisted settings %v, want %v", settings, want)
	}
	if cv := s.ConfigValues()["netTrace"]; !reflect.DeepEqual(cv, map[string]any{"mode": "fast", "replicas": 2.0}) {
		t.Errorf("config values %v", cv)
	}

	// Rejected by the schema: neither memory nor the cluster changes.
	bad, _ := ParseJSONPatch([]byte(`[{"op":"add","path":"/netTrace/mode","value":"reckless"}]`))
	if err := s.PatchConfigValues(ctx, bad); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("schema violation: %v", err)
	}
	_ = env.Client.Get(ctx, key, got)
	if !strings.Contains(string(got.Spec.Settings.Raw), `"fast"`) {
		t.Errorf("rejected patch reached the cluster: %s", got.Spec.Settings.Raw)
	}

	// The API server refuses (the package is gone): memory does not change.
	if err := env.Client.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	ok, _ := ParseJSONPatch([]byte(`[{"op":"add","path":"/netTrace/replicas","value":5}]`))
	err := s.PatchConfigValues(ctx, ok)
	if err == nil || !strings.Contains(err.Error(), "GadgetPackage "+key.String()) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("write to a missing package: %v", err)
	}
	if cv := s.ConfigValues()["netTrace"].(map[string]any); cv["replicas"] != 2.0 {
		t.Errorf("failed persist changed config values: %v", cv)
	}
}

// interferingWriter changes the settings while a config patch is being
// persisted, as an operator update racing with a hook would.
type interferingWriter struct {
	store  *ValuesStore
	writes int
}

func (w *interferingWriter) WriteSettings(_ context.Context, _ map[string]any) error {
	w.writes++
	return w.store.SetSettings(map[string]any{"mode": "safe"})
}

func TestValuesStoreConfigPatchRace(t *testing.T) {
	w := &interferingWriter{}
	s := newTestStore(t, w)
	w.store = s
	ops, _ := ParseJSONPatch([]byte(`[{"op":"add","path":"/netTrace/replicas","value":4}]`))
	err := s.PatchConfigValues(context.Background(), ops)
	if err == nil || !strings.Contains(err.Error(), "settings changed") {
		t.Fatalf("error %v", err)
	}
	if cv := s.ConfigValues()["netTrace"]; !reflect.DeepEqual(cv, map[string]any{"mode": "safe"}) {
		t.Errorf("config values %v: the concurrent update must win", cv)
	}
	if w.writes != 1 {
		t.Errorf("writes %d", w.writes)
	}
}

func TestNewValuesStoreRejectsInvalidSettings(t *testing.T) {
	_, err := NewValuesStore(ValuesStoreOptions{Package: "net-trace", Schema: []byte(testSchema), Defaults: map[string]any{"replicas": 1.0}, Settings: map[string]any{"mode": "reckless"}})
	if err == nil || !strings.Contains(err.Error(), "values of netTrace do not match values.schema.json") || !strings.Contains(err.Error(), "mode") {
		t.Errorf("error %v", err)
	}
	_, err = NewValuesStore(ValuesStoreOptions{Package: "net-trace", Schema: []byte(`{"type": "object", "properties": {`)})
	if err == nil || !strings.Contains(err.Error(), "create values store") {
		t.Errorf("broken schema: %v", err)
	}
	if _, err := NewValuesStore(ValuesStoreOptions{}); err == nil {
		t.Error("store without a package name")
	}
}

// TestRunTaskPatchesAllOrNothing: a run's config-values patch and values
// patch are validated together before the settings are persisted, so when
// either is rejected neither the GadgetPackage in the cluster nor the store
// changes.
func TestRunTaskPatchesAllOrNothing(t *testing.T) {
	const (
		goodConfig = `echo '[{"op":"add","path":"/netTrace/replicas","value":3}]' > "$CONFIG_VALUES_JSON_PATCH_PATH"`
		badConfig  = `echo '[{"op":"add","path":"/netTrace/mode","value":"reckless"}]' > "$CONFIG_VALUES_JSON_PATCH_PATH"`
		goodValues = `echo '[{"op":"add","path":"/netTrace/mode","value":"safe"}]' > "$VALUES_JSON_PATCH_PATH"`
		badValues  = `echo '[{"op":"add","path":"/netTrace/replicas","value":"many"}]' > "$VALUES_JSON_PATCH_PATH"`
		original   = `{"mode":"fast","extra":{"b":2}}`
	)
	tests := []struct {
		name, body string
		// wantErr is empty when both patches apply.
		wantErr      string
		wantSettings map[string]any
		wantValues   map[string]any
	}{
		{"values patch rejected", goodConfig + "\n" + badValues, "values patch rejected",
			map[string]any{"mode": "fast", "extra": map[string]any{"b": 2.0}},
			map[string]any{"replicas": 1.0, "mode": "fast", "extra": map[string]any{"a": 1.0, "b": 2.0}}},
		{"config values patch rejected", badConfig + "\n" + goodValues, "config values patch rejected",
			map[string]any{"mode": "fast", "extra": map[string]any{"b": 2.0}},
			map[string]any{"replicas": 1.0, "mode": "fast", "extra": map[string]any{"a": 1.0, "b": 2.0}}},
		{"both apply", goodConfig + "\n" + goodValues, "",
			map[string]any{"mode": "fast", "extra": map[string]any{"b": 2.0}, "replicas": 3.0},
			map[string]any{"replicas": 3.0, "mode": "safe", "extra": map[string]any{"a": 1.0, "b": 2.0}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			ns := env.Namespace(t)
			gp := &gadgetpmv1alpha1.GadgetPackage{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "net-trace"},
				Spec: gadgetpmv1alpha1.GadgetPackageSpec{
					Repository: "main", Package: "net-trace",
					Settings: &apiextensionsv1.JSON{Raw: []byte(original)},
				},
			}
			if err := env.Client.Create(ctx, gp); err != nil {
				t.Fatal(err)
			}
			key := types.NamespacedName{Namespace: ns, Name: "net-trace"}
			store := newTestStore(t, GadgetPackageSettings{Client: env.Client, Key: key})
			h := loadHook(t, newPackage(t, map[string]string{"hooks/h": bashHook(trivialConfig, tt.body)}), "h")
			f := newTaskFixture(t, nil)
			err := NewRunTask(f.deps, h, store, Trigger{Type: OnStartup}).Execute(f.ctx)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "hook h")) {
				t.Fatalf("error %v, want it to name the hook and say %q", err, tt.wantErr)
			}

			if settings, _ := clusterSettings(t, key); !reflect.DeepEqual(settings, tt.wantSettings) {
				t.Errorf("settings in the cluster %v, want %v", settings, tt.wantSettings)
			}
			if cv := store.ConfigValues()["netTrace"]; !reflect.DeepEqual(cv, tt.wantSettings) {
				t.Errorf("config values in the store %v, want %v", cv, tt.wantSettings)
			}
			if v, err := store.Values(); err != nil || !reflect.DeepEqual(v["netTrace"], tt.wantValues) {
				t.Errorf("values %v (%v), want %v", v["netTrace"], err, tt.wantValues)
			}
		})
	}
}
