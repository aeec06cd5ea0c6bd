package nelm_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// configMapIn is a template of one ConfigMap named name, in namespace ns
// ("" for the release's).
func configMapIn(ns, name string) string {
	meta := "  name: " + name + "\n"
	if ns != "" {
		meta += "  namespace: " + ns + "\n"
	}
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n" + meta + "data:\n  k: v\n"
}

// TestUpgradeActsAsServiceAccount: a package naming a ServiceAccount gets
// its rights and no more: its release goes where the account may write,
// and an object outside is refused by the API server with a message naming
// verb, resource, namespace and account; nothing is created there.
func TestUpgradeActsAsServiceAccount(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	nelmtest.ServiceAccount(t, env.Client, nsA, "deployer", nelmtest.ReleaseStorage, nelmtest.ConfigMaps)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, nsA, "tenant")
	pkg.ServiceAccount = "deployer"
	user := identity.UserName(nsA, "deployer")
	ctx := ctxFor(t)

	if _, err := s.Upgrade(ctx, pkg, chartOf("tenant", "1.0.0", map[string]string{"cm.yaml": configMapIn("", "own")}), nil); err != nil {
		t.Fatalf("install into the account's own namespace: %v", err)
	}
	if _, ok := getConfigMap(t, nsA, "own"); !ok {
		t.Fatalf("ConfigMap %s/own missing after install", nsA)
	}
	if !slices.Contains(s.Identities(), user) {
		t.Errorf("Identities() = %v; want %s cached while its package has a release", s.Identities(), user)
	}

	_, err := s.Upgrade(ctx, pkg, chartOf("tenant", "1.0.1", map[string]string{"cm.yaml": configMapIn(nsB, "stray")}), nil)
	// Helm reads before it creates, so the verb refused is get.
	want := fmt.Sprintf("get configmaps in namespace %s: forbidden for service account %s/deployer", nsB, nsA)
	var fe *identity.ForbiddenError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) {
		t.Fatalf("upgrade with an object in another namespace: %v; want a ForbiddenError saying %q", err, want)
	}
	if _, ok := getConfigMap(t, nsB, "stray"); ok {
		t.Fatalf("ConfigMap %s/stray was created by a package whose account may not", nsB)
	}
	waitForEventWith(t, pkg, nelm.ReasonForbidden, want)

	if err := s.Delete(ctx, pkg); err != nil {
		t.Fatalf("delete as the account: %v", err)
	}
	if _, ok := getConfigMap(t, nsA, "own"); ok {
		t.Errorf("ConfigMap %s/own still there after delete", nsA)
	}
	if ids := s.Identities(); len(ids) != 0 {
		t.Errorf("Identities() after the only package using it was deleted = %v; want none", ids)
	}
}

// TestUpgradeWithoutServiceAccountKeepsOperatorRights: a package naming
// none acts as the Service's own identity, as before, even next to one
// that is refused.
func TestUpgradeWithoutServiceAccountKeepsOperatorRights(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, nsA, "admin")
	if _, err := s.Upgrade(ctxFor(t), pkg, chartOf("admin", "1.0.0", map[string]string{"cm.yaml": configMapIn(nsB, "elsewhere")}), nil); err != nil {
		t.Fatalf("install with the operator's identity: %v", err)
	}
	if _, ok := getConfigMap(t, nsB, "elsewhere"); !ok {
		t.Fatalf("ConfigMap %s/elsewhere missing", nsB)
	}
	if ids := s.Identities(); len(ids) != 0 {
		t.Errorf("Identities() = %v; want none for a package without a ServiceAccount", ids)
	}
}

// TestUpgradeMissingServiceAccount: naming a ServiceAccount that does not
// exist fails at once with an error naming it, not request after request.
func TestUpgradeMissingServiceAccount(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "ghostly")
	pkg.ServiceAccount = "ghost"
	ch := chartOf("ghostly", "1.0.0", map[string]string{"cm.yaml": configMapIn("", "c")})
	_, err := s.Upgrade(ctxFor(t), pkg, ch, nil)
	if !errors.Is(err, nelm.ErrServiceAccountNotFound) || !strings.Contains(err.Error(), ns+"/ghost") {
		t.Fatalf("upgrade as a missing account: %v; want ErrServiceAccountNotFound naming %s/ghost", err, ns)
	}
	waitForEventWith(t, pkg, nelm.ReasonServiceAccountNotFound, ns+"/ghost", "spec.serviceAccountName")
	err = s.InstallCRDs(ctxFor(t), pkg, withCRDs(chartOf("ghostly", "1.0.0", nil), map[string]string{"g.yaml": packagetest.CRD("ghost.nelm.gadgetpm.test", "Ghost", "ghosts")}))
	if !errors.Is(err, nelm.ErrServiceAccountNotFound) {
		t.Fatalf("InstallCRDs as a missing account: %v; want ErrServiceAccountNotFound", err)
	}
}

// TestInstallCRDsActsAsServiceAccount: a chart's crds/ are created as the
// package's account, so an account without cluster rights cannot define
// kinds for the whole cluster.
func TestInstallCRDsActsAsServiceAccount(t *testing.T) {
	ns := env.Namespace(t)
	nelmtest.ServiceAccount(t, env.Client, ns, "deployer", nelmtest.ReleaseStorage)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "definer")
	pkg.ServiceAccount = "deployer"
	const group = "tenant.nelm.gadgetpm.test"
	deleteCRDAtEnd(t, "widgets."+group)
	ch := withCRDs(chartOf("definer", "1.0.0", nil), map[string]string{"w.yaml": packagetest.CRD(group, "Widget", "widgets")})
	err := s.InstallCRDs(ctxFor(t), pkg, ch)
	want := fmt.Sprintf("create customresourcedefinitions.apiextensions.k8s.io at the cluster scope: forbidden for service account %s/deployer", ns)
	if !identity.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("InstallCRDs as an account without cluster rights: %v; want %q", err, want)
	}
	if _, ok := getCRD(t, "widgets."+group); ok {
		t.Fatal("the CRD was created although the package's account may not")
	}
	waitForEventWith(t, pkg, nelm.ReasonForbidden, want)
}

// TestMonitorFollowsTheIdentity: when a package stops naming a
// ServiceAccount, its drift monitor reads as the Service again and the
// account's clients go.
func TestMonitorFollowsTheIdentity(t *testing.T) {
	ns := env.Namespace(t)
	nelmtest.ServiceAccount(t, env.Client, ns, "deployer", nelmtest.ReleaseStorage, nelmtest.ConfigMaps)
	s := newService(t, nelm.Options{MonitorInterval: 100 * time.Millisecond})
	pkg := newPackage(t, ns, "switch")
	pkg.ServiceAccount = "deployer"
	ctx := ctxFor(t)
	ch := chartOf("switch", "1.0.0", map[string]string{"cm.yaml": configMapIn("", "switch-cm")})
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	pkg.ServiceAccount = ""
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	// A drift report proves the monitor checked after the switch.
	deleteConfigMap(t, ns, "switch-cm")
	nextDrift(t, s)
	if ids := s.Identities(); len(ids) != 0 {
		t.Errorf("Identities() after the package dropped its account = %v; want none", ids)
	}
}
