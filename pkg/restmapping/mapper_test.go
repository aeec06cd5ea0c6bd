package restmapping_test

import (
	"context"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func TestNewContactsNothing(t *testing.T) {
	// Nothing listens here: New must not discover anything yet.
	m, err := restmapping.New(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatalf("New with an unreachable server: %v; want the first lookup, not New, to contact it", err)
	}
	if _, err := m.RESTMapping(schema.GroupKind{Kind: "ConfigMap"}, "v1"); err == nil {
		t.Fatal("lookup against an unreachable server succeeded")
	}
}

func TestShortNamesPluralsAndAnyCase(t *testing.T) {
	m, err := restmapping.New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{"cm", "configmaps", "configmap"} {
		gvk, err := m.KindFor(schema.GroupVersionResource{Version: "v1", Resource: res})
		if err != nil || gvk.Kind != "ConfigMap" {
			t.Errorf("KindFor(%q) = %v, %v; want ConfigMap", res, gvk, err)
		}
	}
}

// TestKindOfACRDCreatedAfterTheFirstLookup is what every service relies
// on: one cache for the process, yet a kind created later is found
// without anybody resetting it.
func TestKindOfACRDCreatedAfterTheFirstLookup(t *testing.T) {
	m, err := restmapping.New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	group := "restmapping.gadgetpm.io"
	gk := schema.GroupKind{Group: group, Kind: "Gizmo"}
	if _, err := m.RESTMapping(gk, "v1"); !meta.IsNoMatchError(err) {
		t.Fatalf("RESTMapping before the CRD exists: %v; want a no-match error", err)
	}
	if _, served, err := m.ServedVersions(group); err != nil || served {
		t.Fatalf("ServedVersions(%s) before the CRD exists = %v, %v; want not served", group, served, err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gizmos." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "gizmos", Singular: "gizmo", Kind: "Gizmo", ListKind: "GizmoList", ShortNames: []string{"gzm"}},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: func(b bool) *bool { return &b }(true),
				}},
			}},
		},
	}
	if err := env.Client.Create(context.Background(), crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), crd) })

	// The API server serves the kind a moment after the CRD is created.
	mapping := eventually.Value(t, 30*time.Second, "the new CRD's kind mapped", func() (*meta.RESTMapping, error) {
		return m.RESTMapping(gk, "v1")
	})
	if mapping.Resource.Resource != "gizmos" {
		t.Errorf("resource = %q, want gizmos", mapping.Resource.Resource)
	}
	if gvk, err := m.KindFor(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "gzm"}); err != nil || gvk.Kind != "Gizmo" {
		t.Errorf("KindFor(gzm) = %v, %v; want Gizmo by its short name", gvk, err)
	}
	versions, served, err := m.ServedVersions(group)
	if err != nil || !served || len(versions) != 1 || versions[0] != "v1" {
		t.Errorf("ServedVersions(%s) = %v, %v, %v; want [v1], served", group, versions, served, err)
	}
}
