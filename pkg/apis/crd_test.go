package apis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// sample reads one object from config/samples and places it in ns (when
// namespaced) under a unique name.
func sample(t *testing.T, file, ns string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "samples", file))
	if err != nil {
		t.Fatalf("read sample: %v", err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		t.Fatalf("parse sample %s: %v", file, err)
	}
	if u.GetNamespace() != "" {
		u.SetNamespace(ns)
	}
	u.SetName(fmt.Sprintf("%s-%s", u.GetName(), strings.ToLower(strings.ReplaceAll(ns, "_", "-"))))
	return u
}

func TestCRDsAreEstablished(t *testing.T) {
	ctx := ctxT(t)
	for _, name := range []string{"packagerepositories.gadgetpm.io", "gadgetpackages.gadgetpm.io", "traces.gadget.kinvolk.io"} {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := env.Client.Get(ctx, clientKey(name), crd); err != nil {
			t.Fatalf("CRD %s: %v", name, err)
		}
		established := false
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				established = true
			}
		}
		if !established {
			t.Errorf("CRD %s is not Established: %+v", name, crd.Status.Conditions)
		}
		if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Subresources == nil || crd.Spec.Versions[0].Subresources.Status == nil {
			t.Errorf("CRD %s: want one version with the status subresource", name)
		}
		if len(crd.Spec.Names.ShortNames) == 0 {
			t.Errorf("CRD %s has no short names", name)
		}
	}
}

func TestSamplesAreAccepted(t *testing.T) {
	ns := env.Namespace(t)
	files, err := filepath.Glob(filepath.Join(env.RepoRoot, "config", "samples", "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("want at least 5 samples, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			u := sample(t, filepath.Base(f), ns)
			if err := env.Client.Create(ctxT(t), u); err != nil {
				t.Fatalf("create %s: %v", filepath.Base(f), err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	ns := env.Namespace(t)
	ctx := ctxT(t)
	tests := []struct {
		file string
		drop []string // fields removed before create so the default applies
		want map[string]any
	}{
		{"trace.yaml", []string{"runMode", "outputMode"}, map[string]any{"runMode": "Manual", "outputMode": "Status", "historyLimit": int64(5)}},
		{"gadgetpackage.yaml", []string{"version"}, map[string]any{"version": "*", "enabled": true}},
		{"packagerepository.yaml", []string{"interval"}, map[string]any{"interval": "10m", "timeout": "60s"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			u := sample(t, tt.file, ns)
			u.SetName(u.GetName() + "-defaults")
			for _, f := range tt.drop {
				unstructured.RemoveNestedField(u.Object, "spec", f)
			}
			if err := env.Client.Create(ctx, u); err != nil {
				t.Fatalf("create: %v", err)
			}
			for field, want := range tt.want {
				got, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", field)
				if got != want {
					t.Errorf("spec.%s = %#v, want default %#v", field, got, want)
				}
			}
		})
	}
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	ns := env.Namespace(t)
	set := func(v any, path ...string) func(*unstructured.Unstructured) {
		return func(u *unstructured.Unstructured) {
			if err := unstructured.SetNestedField(u.Object, v, path...); err != nil {
				t.Fatalf("set %v: %v", path, err)
			}
		}
	}
	drop := func(path ...string) func(*unstructured.Unstructured) {
		return func(u *unstructured.Unstructured) { unstructured.RemoveNestedField(u.Object, path...) }
	}
	tests := []struct {
		name   string
		file   string
		mutate func(*unstructured.Unstructured)
		want   []string // substrings of the API server's message
	}{
		{"trace unknown outputMode", "trace.yaml", set("Pipe", "spec", "outputMode"),
			[]string{"spec.outputMode", `Unsupported value: "Pipe"`, `"Status"`, `"ExternalResource"`}},
		{"trace unknown runMode", "trace.yaml", set("Auto", "spec", "runMode"),
			[]string{"spec.runMode", `Unsupported value: "Auto"`}},
		{"trace cron in words", "trace-scheduled.yaml", set("every hour", "spec", "schedule"),
			[]string{"spec.schedule", "schedule must be a cron spec with 5 or 6 fields"}},
		{"trace cron with 3 fields", "trace-scheduled.yaml", set("* * *", "spec", "schedule"),
			[]string{"spec.schedule", "schedule must be a cron spec"}},
		{"trace cron with 7 fields", "trace-scheduled.yaml", set("0 0 * * * * *", "spec", "schedule"),
			[]string{"spec.schedule", "schedule must be a cron spec"}},
		{"trace unknown descriptor", "trace-scheduled.yaml", set("@fortnightly", "spec", "schedule"),
			[]string{"spec.schedule", "schedule must be a cron spec"}},
		{"trace missing node", "trace.yaml", drop("spec", "node"),
			[]string{"spec.node", "Required value"}},
		{"trace missing gadget", "trace.yaml", drop("spec", "gadget"),
			[]string{"spec.gadget", "Required value"}},
		{"trace duration in words", "trace-scheduled.yaml", set("30 seconds", "spec", "duration"),
			[]string{"spec.duration", "should match"}},
		{"trace historyLimit zero", "trace-scheduled.yaml", set(int64(0), "spec", "historyLimit"),
			[]string{"spec.historyLimit", "greater than or equal to 1"}},
		{"package version latest", "gadgetpackage.yaml", set("latest", "spec", "version"),
			[]string{"spec.version", "version must be a semver constraint"}},
		{"package version dangling operator", "gadgetpackage.yaml", set(">=1.0 <", "spec", "version"),
			[]string{"spec.version", "version must be a semver constraint"}},
		{"package version four parts", "gadgetpackage.yaml", set("1.2.3.4", "spec", "version"),
			[]string{"spec.version", "version must be a semver constraint"}},
		{"package missing repository", "gadgetpackage.yaml", drop("spec", "repository"),
			[]string{"spec.repository", "Required value"}},
		{"package missing package", "gadgetpackage.yaml", drop("spec", "package"),
			[]string{"spec.package", "Required value"}},
		{"package settings not an object", "gadgetpackage.yaml", set("verbose", "spec", "settings"),
			[]string{"spec.settings", "must be of type object"}},
		{"repository ftp url", "packagerepository.yaml", set("ftp://example.com/charts", "spec", "url"),
			[]string{"spec.url", "url must start with https://, http://, file:// or oci://"}},
		{"repository missing url", "packagerepository.yaml", drop("spec", "url"),
			[]string{"spec.url", "Required value"}},
		{"repository verify without keyring", "packagerepository-oci.yaml", drop("spec", "verify", "keyringSecretRef"),
			[]string{"spec.verify", "keyringSecretRef is required"}},
		{"repository unknown verify mode", "packagerepository-oci.yaml", set("Sometimes", "spec", "verify", "mode"),
			[]string{"spec.verify.mode", `Unsupported value: "Sometimes"`}},
		{"repository interval in words", "packagerepository.yaml", set("ten minutes", "spec", "interval"),
			[]string{"spec.interval", "should match"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := sample(t, tt.file, ns)
			u.SetName(fmt.Sprintf("%s-bad-%d", u.GetName(), i))
			tt.mutate(u)
			err := env.Client.Create(ctxT(t), u)
			if err == nil {
				t.Fatalf("the API server accepted the invalid object: %v", u.Object["spec"])
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidShapesAreAccepted(t *testing.T) {
	ns := env.Namespace(t)
	tests := []struct {
		file  string
		field string
		value string
	}{
		{"trace-scheduled.yaml", "schedule", "@every 2s"},
		{"trace-scheduled.yaml", "schedule", "@every 1h30m"},
		{"trace-scheduled.yaml", "schedule", "@hourly"},
		{"trace-scheduled.yaml", "schedule", "*/5 * * * *"},
		{"trace-scheduled.yaml", "schedule", "0 30 * * * MON-FRI"},
		{"trace-scheduled.yaml", "schedule", "CRON_TZ=Europe/Berlin 0 9 * * 1"},
		{"trace-scheduled.yaml", "schedule", "TZ=UTC @daily"},
		{"gadgetpackage.yaml", "version", "*"},
		{"gadgetpackage.yaml", "version", "^1.4"},
		{"gadgetpackage.yaml", "version", "~2.0.1"},
		{"gadgetpackage.yaml", "version", "1.x"},
		{"gadgetpackage.yaml", "version", ">= 1.2, < 2"},
		{"gadgetpackage.yaml", "version", "1.2 - 1.4.5"},
		{"gadgetpackage.yaml", "version", "^1.0 || >=3.0.0-rc.1"},
		{"gadgetpackage.yaml", "version", "v1.2.3+build.7"},
		{"packagerepository.yaml", "url", "http://127.0.0.1:8080/charts"},
		{"packagerepository.yaml", "url", "file:///var/lib/gadgetpm/repo"},
		{"packagerepository.yaml", "url", "oci://localhost:5000/gadgets"},
	}
	for i, tt := range tests {
		t.Run(tt.field+"="+tt.value, func(t *testing.T) {
			u := sample(t, tt.file, ns)
			u.SetName(fmt.Sprintf("%s-ok-%d", u.GetName(), i))
			if err := unstructured.SetNestedField(u.Object, tt.value, "spec", tt.field); err != nil {
				t.Fatal(err)
			}
			if err := env.Client.Create(ctxT(t), u); err != nil {
				t.Fatalf("rejected: %v", err)
			}
		})
	}
}

// table fetches an object as kubectl get does, through the Table API.
func table(t *testing.T, path string) *metav1.Table {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, strings.TrimSuffix(env.Config.Host, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	tbl := &metav1.Table{}
	if err := json.Unmarshal(body, tbl); err != nil {
		t.Fatalf("decode table: %v", err)
	}
	return tbl
}

// columns returns the default (priority 0) columns and the first row's cells
// by column name, as `kubectl get` shows them.
func columns(t *testing.T, tbl *metav1.Table) ([]string, map[string]any) {
	t.Helper()
	if len(tbl.Rows) != 1 {
		t.Fatalf("want 1 row, got %d", len(tbl.Rows))
	}
	var names []string
	cells := map[string]any{}
	for i, c := range tbl.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
		cells[c.Name] = tbl.Rows[0].Cells[i]
	}
	return names, cells
}

func TestPrinterColumns(t *testing.T) {
	ns := env.Namespace(t)
	ctx := ctxT(t)
	now := metav1.Now().Rfc3339Copy()

	pkg := sample(t, "gadgetpackage.yaml", ns)
	repo := sample(t, "packagerepository.yaml", ns)
	trace := sample(t, "trace-scheduled.yaml", ns)
	statuses := []struct {
		obj    *unstructured.Unstructured
		path   string
		status map[string]any
		cols   []string
		cells  map[string]any
	}{
		{
			obj:    pkg,
			path:   "/apis/gadgetpm.io/v1alpha1/namespaces/" + ns + "/gadgetpackages/" + pkg.GetName(),
			status: map[string]any{"phase": "Loaded", "enabled": false, "version": "1.2.3", "reason": "requires net-base >=1.2, found 1.1"},
			cols:   []string{"Name", "PHASE", "ENABLED", "VERSION", "REASON", "AGE"},
			cells:  map[string]any{"PHASE": "Loaded", "ENABLED": false, "VERSION": "1.2.3", "REASON": "requires net-base >=1.2, found 1.1"},
		},
		{
			obj:  repo,
			path: "/apis/gadgetpm.io/v1alpha1/packagerepositories/" + repo.GetName(),
			status: map[string]any{
				"packageCount": int64(3), "lastSyncTime": now.Format(time.RFC3339),
				"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "3 packages", "lastTransitionTime": now.Format(time.RFC3339)}},
			},
			cols:  []string{"Name", "URL", "READY", "PACKAGES", "LAST SYNC"},
			cells: map[string]any{"URL": "https://charts.example.com/gadgets", "READY": "True", "PACKAGES": float64(3)},
		},
		{
			obj:    trace,
			path:   "/apis/gadget.kinvolk.io/v1alpha1/namespaces/" + ns + "/traces/" + trace.GetName(),
			status: map[string]any{"state": "Started", "lastRunTime": now.Format(time.RFC3339)},
			cols:   []string{"Name", "NODE", "GADGET", "STATE", "SCHEDULE", "LAST RUN", "AGE"},
			cells:  map[string]any{"NODE": "node-1", "GADGET": "gadget/trace-open", "STATE": "Started", "SCHEDULE": "CRON_TZ=UTC 0 * * * *"},
		},
	}
	for _, s := range statuses {
		t.Run(s.obj.GetKind(), func(t *testing.T) {
			if err := env.Client.Create(ctx, s.obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			s.obj.Object["status"] = s.status
			if err := env.Client.Status().Update(ctx, s.obj); err != nil {
				t.Fatalf("update status: %v", err)
			}
			names, cells := columns(t, table(t, s.path))
			if strings.Join(names, ",") != strings.Join(s.cols, ",") {
				t.Errorf("columns = %v, want %v", names, s.cols)
			}
			for k, want := range s.cells {
				if cells[k] != want {
					t.Errorf("%s = %#v, want %#v", k, cells[k], want)
				}
			}
			for _, k := range []string{"AGE", "LAST SYNC", "LAST RUN"} {
				if v, ok := cells[k]; ok && (v == nil || v == "") {
					t.Errorf("%s is empty", k)
				}
			}
		})
	}
}
