package hooks

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestResolveKindsAgainstAPIServer(t *testing.T) {
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		apiVersion, kind      string
		wantVersion, wantKind string
	}{
		{"", "ConfigMap", "v1", "ConfigMap"},
		{"", "configmap", "v1", "ConfigMap"},
		{"", "ConfigMaps", "v1", "ConfigMap"},
		{"", "cm", "v1", "ConfigMap"},
		{"v1", "CM", "v1", "ConfigMap"},
		{"v1", "pods", "v1", "Pod"},
		{"", "po", "v1", "Pod"},
		{"", "Deployment", "apps/v1", "Deployment"},
		{"apps/v1", "deploy", "apps/v1", "Deployment"},
		{"", "gadgetpackages", "gadgetpm.io/v1alpha1", "GadgetPackage"},
		{"gadgetpm.io/v1alpha1", "gpkg", "gadgetpm.io/v1alpha1", "GadgetPackage"},
		{"", "NameSpace", "v1", "Namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.apiVersion+"/"+tt.kind, func(t *testing.T) {
			cfg := &Config{Kubernetes: []KubernetesBinding{{Common: Common{Name: "b"}}}}
			cfg.Kubernetes[0].Monitor.APIVersion, cfg.Kubernetes[0].Monitor.Kind = tt.apiVersion, tt.kind
			if err := cfg.ResolveKinds("h", mapper); err != nil {
				t.Fatal(err)
			}
			m := cfg.Kubernetes[0].Monitor
			if m.APIVersion != tt.wantVersion || m.Kind != tt.wantKind {
				t.Errorf("resolved to %s %s, want %s %s", m.APIVersion, m.Kind, tt.wantVersion, tt.wantKind)
			}
		})
	}
}

func TestResolveKindsUnknownKind(t *testing.T) {
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ apiVersion, kind string }{{"", "Wibble"}, {"apps/v1", "Pod"}, {"nosuch.io/v1", "Thing"}} {
		cfg, err := ParseConfig("20-watch", []byte("configVersion: v1\nkubernetes:\n- name: w\n  apiVersion: '"+tt.apiVersion+"'\n  kind: "+tt.kind))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.ResolveKinds("20-watch", mapper)
		if err == nil {
			t.Fatalf("%s %s resolved", tt.apiVersion, tt.kind)
		}
		for _, want := range []string{"hook 20-watch", `kubernetes[0] "w"`, "field kind", "unknown kind " + `"` + tt.kind + `"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("error does not match ErrInvalidConfig: %v", err)
		}
	}
}

// A binding may name a kind whose CRD does not exist yet: the first lookup
// fails, and once the CRD is served the same mapper resolves it.
func TestResolveKindsCRDCreatedLater(t *testing.T) {
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("h", []byte("configVersion: v1\nkubernetes:\n- name: w\n  kind: gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ResolveKinds("h", mapper); err == nil {
		t.Fatal("short name of a CRD that does not exist yet resolved")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gizmos.later.gadgetpm.test"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "later.gadgetpm.test",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "gizmos", Singular: "gizmo", Kind: "Gizmo", ShortNames: []string{"gz"}},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptrTo(true),
				}},
			}},
		},
	}
	if err := env.Client.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), crd) })
	for {
		err = cfg.ResolveKinds("h", mapper)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("CRD never resolved: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if m := cfg.Kubernetes[0].Monitor; m.APIVersion != "later.gadgetpm.test/v1" || m.Kind != "Gizmo" {
		t.Errorf("resolved to %s %s", m.APIVersion, m.Kind)
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestLoadResolvesKinds(t *testing.T) {
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir := newPackage(t, map[string]string{
		"hooks/ok":  bashHook("configVersion: v1\nkubernetes:\n- {name: pods, kind: PO}", "true"),
		"hooks/bad": bashHook("configVersion: v1\nkubernetes:\n- {name: w, kind: Wibbles}", "true"),
	})
	opts := LoadOptions{Package: "p", PackageKey: "ns.p", Mapper: mapper}
	hooks, err := Load(context.Background(), dir, []string{"ok"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m := hooks[0].Config.Kubernetes[0].Monitor; m.Kind != "Pod" || m.APIVersion != "v1" || m.ID != "ns.p/ok/pods" {
		t.Errorf("monitor %+v", m)
	}
	_, err = Load(context.Background(), dir, []string{"ok", "bad"}, opts)
	if err == nil || !strings.Contains(err.Error(), `hook bad: binding kubernetes[0] "w": field kind: unknown kind "Wibbles"`) {
		t.Errorf("error %v", err)
	}
}

// A group the API server serves at other versions is a mistake in the
// binding, not a CRD to come: the error names the field apiVersion and the
// versions that are served.
func TestResolveKindsGroupServedAtOtherVersions(t *testing.T) {
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ apiVersion, kind, want string }{
		{"events.k8s.io/v1beta1", "Event", "events.k8s.io/v1beta1 is not served; served versions of events.k8s.io: v1"},
		{"v2", "ConfigMap", "v2 is not served; served versions of the core group: v1"},
		{"apps/v2", "Deploymnt", "apps/v2 is not served; served versions of apps: v1"},
	} {
		t.Run(tt.apiVersion, func(t *testing.T) {
			cfg, err := ParseConfig("20-watch", []byte("configVersion: v1\nkubernetes:\n- name: w\n  apiVersion: "+tt.apiVersion+"\n  kind: "+tt.kind))
			if err != nil {
				t.Fatal(err)
			}
			for name, resolve := range map[string]func(string, meta.RESTMapper) error{"ResolveKinds": cfg.ResolveKinds, "ResolveKindsLater": cfg.ResolveKindsLater} {
				err := resolve("20-watch", mapper)
				if err == nil {
					t.Fatalf("%s accepted %s %s", name, tt.apiVersion, tt.kind)
				}
				want := `hook 20-watch: binding kubernetes[0] "w": field apiVersion: ` + tt.want
				if err.Error() != want {
					t.Errorf("%s: error\n %q, want\n %q", name, err, want)
				}
				if strings.Contains(err.Error(), "unknown kind") {
					t.Errorf("%s: error %q speaks of an unknown kind; the version is what is wrong", name, err)
				}
			}
		})
	}
}

// ResolveKindsLater accepts a binding whose API group is not served at
// all (its CRD may come later), keeps its kind as written and says why;
// every other unknown kind is still an error.
func TestResolveKindsLater(t *testing.T) {
	mapper, err := NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("20-watch", []byte(`configVersion: v1
kubernetes:
- {name: pods, kind: po}
- {name: crontabs, apiVersion: stable.notyet.gadgetpm.test/v1, kind: crontab}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ResolveKindsLater("20-watch", mapper); err != nil {
		t.Fatal(err)
	}
	if m := cfg.Kubernetes[0].Monitor; m.Kind != "Pod" || cfg.Kubernetes[0].KindNotServed != "" {
		t.Errorf("served kind: resolved to %s, KindNotServed %q", m.Kind, cfg.Kubernetes[0].KindNotServed)
	}
	b := cfg.Kubernetes[1]
	if b.Monitor.APIVersion != "stable.notyet.gadgetpm.test/v1" || b.Monitor.Kind != "crontab" {
		t.Errorf("pending kind rewritten to %s %s", b.Monitor.APIVersion, b.Monitor.Kind)
	}
	if !strings.Contains(b.KindNotServed, "API group stable.notyet.gadgetpm.test is not served") {
		t.Errorf("KindNotServed = %q, want the unserved group named", b.KindNotServed)
	}

	for _, tt := range []struct{ config, want string }{
		{"{name: w, apiVersion: v1, kind: ConfigMapz}", `field kind: unknown kind "ConfigMapz" in v1`},
		{"{name: w, kind: CronTab}", `field kind: unknown kind "CronTab" in any served API group`},
	} {
		cfg, err := ParseConfig("20-watch", []byte("configVersion: v1\nkubernetes:\n- "+tt.config))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.ResolveKindsLater("20-watch", mapper); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.config, err, tt.want)
		}
	}
}
