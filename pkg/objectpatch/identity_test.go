package objectpatch

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/pkg/identity"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// TestForPackageDefaultsToThePackageNamespace: a namespaced object that
// names no namespace lands in the package's namespace, not in "default",
// for creation and for patches alike.
func TestForPackageDefaultsToThePackageNamespace(t *testing.T) {
	ns := env.Namespace(t)
	p, err := newPatcher(t).ForPackage(ns, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	docs := `{"operation":"Create","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"unplaced"},"data":{"k":"1"}}}
{"operation":"MergePatch","apiVersion":"v1","kind":"ConfigMap","name":"unplaced","mergePatch":{"data":{"k":"2"}}}`
	if err := p.Apply(ctx, []byte(docs)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if v := getCM(t, ns, "unplaced").Data["k"]; v != "2" {
		t.Errorf("data.k = %q in the package's namespace; want 2", v)
	}
	if nelmtest.ConfigMapExists(t, env.Client, "default", "unplaced") {
		t.Error(`ConfigMap created in "default"`)
	}
}

// TestForPackageActsAsServiceAccount: patches of a package with a
// ServiceAccount get that account's rights only; a refusal names verb,
// resource, namespace and account, and nothing is created.
func TestForPackageActsAsServiceAccount(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	nelmtest.ServiceAccount(t, env.Client, nsA, "patcher", nelmtest.ConfigMaps)
	p, err := newPatcher(t).ForPackage(nsA, "patcher")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Apply(ctx, []byte(`{"operation":"Create","object":`+cmObject(nsA, "mine", `{}`)+`}`)); err != nil {
		t.Fatalf("create in the account's namespace: %v", err)
	}
	err = p.Apply(ctx, []byte(`{"operation":"Create","object":`+cmObject(nsB, "theirs", `{}`)+`}`))
	want := fmt.Sprintf("create configmaps in namespace %s: forbidden for service account %s/patcher", nsB, nsA)
	if got := identity.DescribeForbidden(err); got != want {
		t.Fatalf("create in another namespace: %v\ndescribed as %q; want %q", err, got, want)
	}
	if !strings.Contains(err.Error(), "Create v1/ConfigMap "+nsB+"/theirs): "+want) {
		t.Errorf("error does not name the operation and the refusal: %v", err)
	}
	if nelmtest.ConfigMapExists(t, env.Client, nsB, "theirs") {
		t.Fatal("ConfigMap created in a namespace the account may not write")
	}
	// The Patcher it came from keeps its own identity.
	if err := newPatcher(t).Apply(ctx, []byte(`{"operation":"Create","object":`+cmObject(nsB, "operator", `{}`)+`}`)); err != nil {
		t.Fatalf("the operator's own patcher: %v", err)
	}
}
