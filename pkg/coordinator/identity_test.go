package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// configMapTemplate is a chart template of ConfigMap name in ns ("" for
// the release's namespace).
func configMapTemplate(ns, name string) map[string]string {
	meta := "  name: " + name + "\n"
	if ns != "" {
		meta += "  namespace: " + ns + "\n"
	}
	return map[string]string{"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n" + meta + "data:\n  k: v\n"}
}

// patchHook is a beforeHelm hook whose object patch creates ConfigMap
// name in ns ("" names no namespace).
func patchHook(ns, name string) map[string]string {
	meta := fmt.Sprintf(`"name":%q`, name)
	if ns != "" {
		meta += fmt.Sprintf(`,"namespace":%q`, ns)
	}
	return map[string]string{"10-patch.sh": fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then
  echo '{"configVersion":"v1","beforeHelm":10}'
  exit 0
fi
echo '{"operation":"CreateOrUpdate","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{%s},"data":{"k":"v"}}}' > "$KUBERNETES_PATCH_PATH"
`, meta)}
}

func createPackageAs(t *testing.T, ns, name, repository, serviceAccount string) {
	t.Helper()
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.GadgetPackageSpec{Repository: repository, Package: name, Version: "*", ServiceAccountName: serviceAccount}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
}

// refused waits until the package is Stalled with Ready reason reason,
// and checks that its Ready message and a Warning Event with that reason
// say every one of parts.
func refused(t *testing.T, ns, name, reason string, parts ...string) {
	t.Helper()
	gp := waitFor(t, ns, name, "Stalled", isStalled)
	ready := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Reason != reason {
		t.Fatalf("Ready of %s/%s = %+v; want reason %s", ns, name, ready, reason)
	}
	for _, p := range parts {
		if !strings.Contains(ready.Message, p) {
			t.Errorf("Ready message of %s/%s = %q; want it to say %q", ns, name, ready.Message, p)
		}
	}
	env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Kind: "GadgetPackage", Name: name,
		Type: corev1.EventTypeWarning, Reason: reason, Parts: parts})
}

// TestPackageActsAsItsServiceAccount: with two tenant namespaces A and B
// and a ServiceAccount of A that may manage ConfigMaps in A only, a
// package of A naming it installs its chart into A and its hooks' object
// patches land in A (no namespace named: the package's); a chart or an
// object patch writing into B is refused, with status, Event and log
// naming the verb, the resource, the namespace and the account, and
// nothing is created in B; a package naming no account still runs with
// the operator's rights.
func TestPackageActsAsItsServiceAccount(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	nelmtest.ServiceAccount(t, env.Client, nsA, "deployer", nelmtest.ReleaseStorage, nelmtest.ConfigMaps)
	repoDir := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "inside", Files: configMapTemplate("", "inside-cm"), Hooks: patchHook("", "inside-patched")},
		packagetest.Source{Name: "chart-out", Files: configMapTemplate(nsB, "chart-out-cm")},
		packagetest.Source{Name: "patch-out", Files: configMapTemplate("", "patch-out-cm"), Hooks: patchHook(nsB, "patch-out-patched")},
		packagetest.Source{Name: "admin", Files: configMapTemplate(nsB, "admin-cm")},
	)
	createRepo(t, "ident-"+nsA, repoDir)
	_, logs, _ := start(t)
	for _, name := range []string{"inside", "chart-out", "patch-out"} {
		createPackageAs(t, nsA, name, "ident-"+nsA, "deployer")
	}
	createPackage(t, nsA, "admin", "ident-"+nsA)

	waitFor(t, nsA, "inside", "Running", running)
	for _, cm := range []string{"inside-cm", "inside-patched"} {
		if !nelmtest.ConfigMapExists(t, env.Client, nsA, cm) {
			t.Errorf("ConfigMap %s/%s missing", nsA, cm)
		}
	}
	if nelmtest.ConfigMapExists(t, env.Client, "default", "inside-patched") {
		t.Error(`the object patch naming no namespace went to "default", not the package's namespace`)
	}

	account := fmt.Sprintf("forbidden for service account %s/deployer", nsA)
	// Helm reads an object before it creates it, so its refusal is a get.
	refused(t, nsA, "chart-out", identity.ReasonForbidden, fmt.Sprintf("get configmaps in namespace %s: %s", nsB, account))
	refused(t, nsA, "patch-out", identity.ReasonForbidden, fmt.Sprintf("create configmaps in namespace %s: %s", nsB, account))
	for _, cm := range []string{"chart-out-cm", "patch-out-patched"} {
		if nelmtest.ConfigMapExists(t, env.Client, nsB, cm) {
			t.Errorf("ConfigMap %s/%s created by a package whose account may not write there", nsB, cm)
		}
	}
	if n := logs.Count(`"msg"="upgrade refused"`, nsA+".chart-out", "configmaps in namespace "+nsB); n == 0 {
		t.Errorf("no error in the log about chart-out's refusal; log:\n%s", strings.Join(logs.Get(), "\n"))
	}

	waitFor(t, nsA, "admin", "Running", running)
	if !nelmtest.ConfigMapExists(t, env.Client, nsB, "admin-cm") {
		t.Errorf("ConfigMap %s/admin-cm of the package with the operator's identity missing", nsB)
	}

	// Its account uninstalls the release too.
	if err := env.Client.Delete(context.Background(), &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "inside"}}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, nsA, "inside")
	if nelmtest.ConfigMapExists(t, env.Client, nsA, "inside-cm") {
		t.Errorf("ConfigMap %s/inside-cm outlived its package", nsA)
	}
}

// TestDefaultServiceAccount: --default-service-account applies to packages
// without spec.serviceAccountName; the field still wins; a package whose
// account does not exist gets a status and an Event saying so.
func TestDefaultServiceAccount(t *testing.T) {
	nsA, nsB, nsC := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	nelmtest.ServiceAccount(t, env.Client, nsA, "tenant", nelmtest.ReleaseStorage, nelmtest.ConfigMaps)
	nelmtest.ServiceAccount(t, env.Client, nsA, "wide", nelmtest.ReleaseStorage, nelmtest.ConfigMaps)
	nelmtest.Grant(t, env.Client, nsB, nsA, "wide", nelmtest.ConfigMaps)
	repoDir := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "local", Files: configMapTemplate("", "local-cm")},
		packagetest.Source{Name: "reach", Files: configMapTemplate(nsB, "reach-cm")},
		packagetest.Source{Name: "granted", Files: configMapTemplate(nsB, "granted-cm")},
		packagetest.Source{Name: "homeless", Files: configMapTemplate("", "homeless-cm")},
	)
	createRepo(t, "ident-default-"+nsA, repoDir)
	startWith(t, func(o *coordinator.Options) { o.DefaultServiceAccount = "tenant" })
	createPackage(t, nsA, "local", "ident-default-"+nsA)
	createPackage(t, nsA, "reach", "ident-default-"+nsA)
	createPackageAs(t, nsA, "granted", "ident-default-"+nsA, "wide")
	createPackage(t, nsC, "homeless", "ident-default-"+nsA)

	waitFor(t, nsA, "local", "Running", running)
	refused(t, nsA, "reach", identity.ReasonForbidden, fmt.Sprintf("configmaps in namespace %s: forbidden for service account %s/tenant", nsB, nsA))
	if nelmtest.ConfigMapExists(t, env.Client, nsB, "reach-cm") {
		t.Errorf("ConfigMap %s/reach-cm created as the default account, which may not", nsB)
	}
	waitFor(t, nsA, "granted", "Running", running)
	if !nelmtest.ConfigMapExists(t, env.Client, nsB, "granted-cm") {
		t.Errorf("ConfigMap %s/granted-cm of the package whose own account may write there missing", nsB)
	}
	refused(t, nsC, "homeless", identity.ReasonServiceAccountNotFound, nsC+"/tenant", "does not exist", "--default-service-account")
}
