package objectpatch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	gadgetpmv1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

func newPatcher(t *testing.T) *Patcher {
	t.Helper()
	p, err := New(env.Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func getCM(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, cm); err != nil {
		t.Fatalf("get ConfigMap %s/%s: %v", ns, name, err)
	}
	return cm
}

func cmObject(ns, name, data string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":%q,"name":%q},"data":%s}`, ns, name, data)
}

func TestApplyOperations(t *testing.T) {
	ns := env.Namespace(t)
	p := newPatcher(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		in      string
		wantErr []string // substrings of the error; nil means success
		check   func(t *testing.T)
	}{
		{"Create", `{"operation":"Create","object":` + cmObject(ns, "a", `{"k":"1"}`) + `}`, nil, func(t *testing.T) {
			if v := getCM(t, ns, "a").Data["k"]; v != "1" {
				t.Fatalf("data.k = %q", v)
			}
		}},
		{"Create existing fails", `{"operation":"Create","object":` + cmObject(ns, "a", `{"k":"2"}`) + `}`,
			[]string{"operation 1 (Create v1/ConfigMap " + ns + "/a)", `configmaps "a" already exists`}, nil},
		{"CreateIfNotExists leaves the existing object", `{"operation":"CreateIfNotExists","object":` + cmObject(ns, "a", `{"k":"2"}`) + `}`, nil, func(t *testing.T) {
			if v := getCM(t, ns, "a").Data["k"]; v != "1" {
				t.Fatalf("data.k = %q, want the old 1", v)
			}
		}},
		{"CreateIfNotExists creates", `{"operation":"CreateIfNotExists","object":` + cmObject(ns, "b", `{"k":"b"}`) + `}`, nil, func(t *testing.T) {
			getCM(t, ns, "b")
		}},
		{"CreateOrUpdate replaces", `{"operation":"CreateOrUpdate","object":` + cmObject(ns, "a", `{"n":"3"}`) + `}`, nil, func(t *testing.T) {
			if d := getCM(t, ns, "a").Data; d["n"] != "3" || d["k"] != "" {
				t.Fatalf("data = %v, want only n=3", d)
			}
		}},
		{"CreateOrUpdate creates", `{"operation":"CreateOrUpdate","object":` + cmObject(ns, "c", `{"k":"c"}`) + `}`, nil, func(t *testing.T) {
			getCM(t, ns, "c")
		}},
		{"MergePatch by short name", fmt.Sprintf(`{"operation":"MergePatch","kind":"cm","namespace":%q,"name":"a","mergePatch":{"data":{"m":"4"}}}`, ns), nil, func(t *testing.T) {
			if d := getCM(t, ns, "a").Data; d["m"] != "4" || d["n"] != "3" {
				t.Fatalf("data = %v, want n=3 and m=4", d)
			}
		}},
		{"JSONPatch by plural", fmt.Sprintf(`{"operation":"JSONPatch","kind":"configmaps","namespace":%q,"name":"a","jsonPatch":[{"op":"remove","path":"/data/m"},{"op":"add","path":"/data/j","value":"5"}]}`, ns), nil, func(t *testing.T) {
			if d := getCM(t, ns, "a").Data; d["j"] != "5" || d["m"] != "" {
				t.Fatalf("data = %v, want j=5 and no m", d)
			}
		}},
		{"JSONPatch whose test fails", fmt.Sprintf(`{"operation":"JSONPatch","kind":"ConfigMap","namespace":%q,"name":"a","jsonPatch":[{"op":"test","path":"/data/j","value":"6"}]}`, ns),
			[]string{"operation 1 (JSONPatch ConfigMap " + ns + "/a)", "test"}, nil},
		{"JQPatch", fmt.Sprintf(`{"operation":"JQPatch","kind":"configmap","namespace":%q,"name":"a","jqFilter":".data.q = (.data.j + \"!\")"}`, ns), nil, func(t *testing.T) {
			if v := getCM(t, ns, "a").Data["q"]; v != "5!" {
				t.Fatalf("data.q = %q", v)
			}
		}},
		{"JQPatch that yields no object", fmt.Sprintf(`{"operation":"JQPatch","kind":"ConfigMap","namespace":%q,"name":"a","jqFilter":".data"}`, ns) + "\n" +
			fmt.Sprintf(`{"operation":"JQPatch","kind":"ConfigMap","namespace":%q,"name":"a","jqFilter":"1"}`, ns),
			[]string{"operation 2 (JQPatch ConfigMap " + ns + "/a)", "expected the new object"}, nil},
		{"MergePatch of a missing object", fmt.Sprintf(`{"operation":"MergePatch","kind":"ConfigMap","namespace":%q,"name":"gone","mergePatch":{"data":{}}}`, ns),
			[]string{"operation 1 (MergePatch ConfigMap " + ns + "/gone)", `configmaps "gone" not found`}, nil},
		{"patches of missing objects ignored", fmt.Sprintf(`{"operation":"MergePatch","kind":"ConfigMap","namespace":%[1]q,"name":"gone","mergePatch":{"data":{}},"ignoreMissingObject":true}
{"operation":"JSONPatch","kind":"ConfigMap","namespace":%[1]q,"name":"gone","jsonPatch":[],"ignoreMissingObject":true}
{"operation":"JQPatch","kind":"ConfigMap","namespace":%[1]q,"name":"gone","jqFilter":".","ignoreMissingObject":true}`, ns), nil, nil},
		{"unknown kind", fmt.Sprintf(`{"operation":"Delete","apiVersion":"v1","kind":"Gizmo","namespace":%q,"name":"a"}`, ns),
			[]string{"operation 1 (Delete v1/Gizmo " + ns + "/a)", `kind "Gizmo"`}, nil},
		{"DeleteInBackground", fmt.Sprintf(`{"operation":"DeleteInBackground","kind":"ConfigMap","namespace":%q,"name":"b"}`, ns), nil, func(t *testing.T) {
			err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b"}, &corev1.ConfigMap{})
			if !apierrors.IsNotFound(err) {
				t.Fatalf("b after DeleteInBackground: %v", err)
			}
		}},
		{"Delete of a missing object", fmt.Sprintf(`{"operation":"Delete","kind":"ConfigMap","namespace":%q,"name":"never"}`, ns), nil, nil},
		// envtest runs no garbage collector: the finalizers the API server
		// sets for the propagation policy stay, which shows the policy sent.
		{"Delete is foreground", fmt.Sprintf(`{"operation":"Delete","kind":"ConfigMap","namespace":%q,"name":"a"}`, ns), nil, func(t *testing.T) {
			cm := getCM(t, ns, "a")
			if cm.DeletionTimestamp == nil || !slices.Contains(cm.Finalizers, metav1.FinalizerDeleteDependents) {
				t.Fatalf("a: deletionTimestamp %v, finalizers %v; want foreground deletion", cm.DeletionTimestamp, cm.Finalizers)
			}
		}},
		{"DeleteNonCascading orphans", fmt.Sprintf(`{"operation":"DeleteNonCascading","kind":"ConfigMap","namespace":%q,"name":"c"}`, ns), nil, func(t *testing.T) {
			cm := getCM(t, ns, "c")
			if cm.DeletionTimestamp == nil || !slices.Contains(cm.Finalizers, metav1.FinalizerOrphanDependents) {
				t.Fatalf("c: deletionTimestamp %v, finalizers %v; want orphan deletion", cm.DeletionTimestamp, cm.Finalizers)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Apply(ctx, []byte(tt.in))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Apply: %v", err)
			case tt.wantErr != nil && err == nil:
				t.Fatal("Apply succeeded")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func TestApplyAttemptsEveryOperation(t *testing.T) {
	ns := env.Namespace(t)
	p := newPatcher(t)
	in := fmt.Sprintf(`
operation: MergePatch
kind: ConfigMap
namespace: %[1]s
name: missing
mergePatch: {data: {a: b}}
---
operation: Create
object:
  apiVersion: v1
  kind: ConfigMap
  metadata: {namespace: %[1]s, name: made}
---
operation: Create
object:
  apiVersion: v1
  kind: ConfigMap
  metadata: {namespace: %[1]s, name: Not_A_Name}
`, ns)
	err := p.Apply(context.Background(), []byte(in))
	if err == nil {
		t.Fatal("Apply succeeded")
	}
	msg := err.Error()
	for _, s := range []string{"operation 1 (MergePatch ConfigMap " + ns + "/missing)", "not found", "operation 3 (Create v1/ConfigMap " + ns + "/Not_A_Name)", "Invalid value"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not mention %q", msg, s)
		}
	}
	if strings.Contains(msg, "operation 2") {
		t.Errorf("error %q blames the operation that succeeded", msg)
	}
	getCM(t, ns, "made")

	// A document that does not parse applies nothing.
	bad := fmt.Sprintf("operation: Create\nobject: {apiVersion: v1, kind: ConfigMap, metadata: {namespace: %s, name: notmade}}\n---\noperation: Explode\n", ns)
	if err := p.Apply(context.Background(), []byte(bad)); err == nil || !strings.Contains(err.Error(), `operation 2: field operation is "Explode"`) {
		t.Fatalf("Apply(bad) = %v", err)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "notmade"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Fatalf("notmade after a parse error: %v", err)
	}
}

func TestApplySubresource(t *testing.T) {
	ns := env.Namespace(t)
	p := newPatcher(t)
	ctx := context.Background()
	pkg := func(t *testing.T) *gadgetpmv1.GadgetPackage {
		t.Helper()
		gp := &gadgetpmv1.GadgetPackage{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "p"}, gp); err != nil {
			t.Fatal(err)
		}
		return gp
	}
	create := fmt.Sprintf(`
operation: CreateOrUpdate
subresource: status
object:
  apiVersion: gadgetpm.io/v1alpha1
  kind: GadgetPackage
  metadata: {namespace: %s, name: p}
  spec: {repository: r, package: x}
  status: {reason: created}
`, ns)
	if err := p.Apply(ctx, []byte(create)); err != nil {
		t.Fatal(err)
	}
	if gp := pkg(t); gp.Status.Reason != "created" || gp.Spec.Package != "x" {
		t.Fatalf("after CreateOrUpdate: spec.package %q status.reason %q", gp.Spec.Package, gp.Status.Reason)
	}
	// A merge patch of the status subresource changes the status only.
	patch := fmt.Sprintf(`{"operation":"MergePatch","kind":"gpkg","namespace":%q,"name":"p","subresource":"status","mergePatch":{"status":{"reason":"patched"},"spec":{"package":"ignored"}}}`, ns)
	if err := p.Apply(ctx, []byte(patch)); err != nil {
		t.Fatal(err)
	}
	if gp := pkg(t); gp.Status.Reason != "patched" || gp.Spec.Package != "x" {
		t.Fatalf("after status MergePatch: spec.package %q status.reason %q", gp.Spec.Package, gp.Status.Reason)
	}
	jq := fmt.Sprintf(`{"operation":"JQPatch","kind":"GadgetPackage","namespace":%q,"name":"p","subresource":"status","jqFilter":".status.reason = \"jq\""}`, ns)
	if err := p.Apply(ctx, []byte(jq)); err != nil {
		t.Fatal(err)
	}
	if gp := pkg(t); gp.Status.Reason != "jq" {
		t.Fatalf("after status JQPatch: status.reason %q", gp.Status.Reason)
	}
	// The API server rejects an update of the main resource that breaks
	// the schema; its message is in the error.
	bad := fmt.Sprintf(`{"operation":"MergePatch","kind":"GadgetPackage","namespace":%q,"name":"p","mergePatch":{"spec":{"package":"Not Valid"}}}`, ns)
	err := p.Apply(ctx, []byte(bad))
	if err == nil || !strings.Contains(err.Error(), "spec.package") {
		t.Fatalf("Apply(invalid spec) = %v, want the API server's message about spec.package", err)
	}
}

func TestNewRejectsNilConfig(t *testing.T) {
	if _, err := New(nil, nil, nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}

func TestApplyFindsKindsServedAfterTheFirstApply(t *testing.T) {
	ns := env.Namespace(t)
	p := newPatcher(t)
	ctx := context.Background()
	// The first Apply fills the patcher's discovery cache.
	if err := p.Apply(ctx, []byte(fmt.Sprintf(`{"operation":"Create","object":%s}`, cmObject(ns, "warm", `{}`)))); err != nil {
		t.Fatal(err)
	}
	group := "patched.gadgetpm.io"
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "sprockets." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "sprockets", Singular: "sprocket", Kind: "Sprocket", ListKind: "SprocketList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}}}},
		},
	}
	if err := env.Client.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), crd) })
	// Wait until the API server serves the kind, seen by a fresh patcher.
	probe := fmt.Sprintf(`{"operation":"Delete","apiVersion":"%s/v1","kind":"Sprocket","namespace":%q,"name":"none"}`, group, ns)
	eventually.NoError(t, 30*time.Second, "the kind to be served", func() error { return newPatcher(t).Apply(ctx, []byte(probe)) })
	op := fmt.Sprintf(`{"operation":"Create","object":{"apiVersion":"%s/v1","kind":"Sprocket","metadata":{"namespace":%q,"name":"s1"},"teeth":12}}`, group, ns)
	if err := p.Apply(ctx, []byte(op)); err != nil {
		t.Fatalf("Apply with a cache from before the CRD: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestApplyOperationsBuiltByHand(t *testing.T) {
	ns := env.Namespace(t)
	p := newPatcher(t)
	ctx := context.Background()
	ops := []Operation{
		{Index: 1, Type: Create},
		{Index: 2, Type: MergePatch, Kind: "ConfigMap", Namespace: ns, Name: "x"},
		{Index: 3, Type: JQPatch, Kind: "ConfigMap", Namespace: ns, Name: "x", JQFilter: ".a |"},
		{Index: 4, Type: "Upsert", Kind: "ConfigMap", Name: "x"},
		{Index: 5, Type: Delete},
	}
	err := p.ApplyOperations(ctx, ops)
	if err == nil {
		t.Fatal("ApplyOperations accepted incomplete operations")
	}
	for _, s := range []string{"operation 1 (Create): field object is missing", "operation 2 (MergePatch ConfigMap " + ns + "/x): field mergePatch is missing",
		`operation 3 (JQPatch ConfigMap ` + ns + `/x): field jqFilter ".a |" does not compile`, `operation 4 (Upsert ConfigMap x): field operation is "Upsert"`,
		"operation 5 (Delete): fields kind and name are required"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if err := env.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "y"}}); err != nil {
		t.Fatal(err)
	}
	good := []Operation{{Index: 1, Type: JQPatch, Kind: "ConfigMap", Namespace: ns, Name: "y", JQFilter: `.data = {"by": "hand"}`}}
	if err := p.ApplyOperations(ctx, good); err != nil {
		t.Fatal(err)
	}
	if v := getCM(t, ns, "y").Data["by"]; v != "hand" {
		t.Fatalf("data.by = %q", v)
	}
}
