package nelm_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	helmrelease "helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// helmConfig is a bare Helm SDK configuration for ns, to look at or tamper
// with releases the way another Helm user would.
func helmConfig(t testing.TB, ns string) *helmaction.Configuration {
	t.Helper()
	return nelmtest.HelmConfig(t, env.Config, ns)
}

// history returns the release's revisions, oldest first.
func history(t testing.TB, ns, name string) []*helmrelease.Release {
	t.Helper()
	return nelmtest.History(t, env.Config, ns, name)
}

func TestUpgradeInstallSkipUpgradeDelete(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "lifecycle")
	ctx := ctxFor(t)
	ch := chartOf("lifecycle", "1.0.0", map[string]string{"cm.yaml": configMaps(2)})

	res, err := s.Upgrade(ctx, pkg, ch, map[string]any{"value": "one"})
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if res.Action != nelm.ActionInstall || res.Revision != 1 {
		t.Fatalf("install result = %+v, want install of revision 1", res)
	}
	cm, ok := getConfigMap(t, ns, "lifecycle-1")
	if !ok || cm.Data["value"] != "one" {
		t.Fatalf("ConfigMap lifecycle-1 after install = %v (exists %v), want value one", cm.Data, ok)
	}
	rel := history(t, ns, "lifecycle")[0]
	if rel.Labels[nelm.LabelManagedBy] != nelm.ManagedByValue || rel.Labels[nelm.LabelChecksum] != res.Checksum {
		t.Fatalf("release labels = %v, want managed-by and checksum %s", rel.Labels, res.Checksum)
	}
	if rel.Info.Status != helmrelease.StatusDeployed {
		t.Fatalf("release status = %s, want deployed", rel.Info.Status)
	}
	waitForEvent(t, pkg, nelm.ReasonInstalled)

	// Same chart, same values (numbers and map order aside): no revision.
	res, err = s.Upgrade(ctx, pkg, ch, map[string]any{"value": "one"})
	if err != nil {
		t.Fatalf("no-op upgrade: %v", err)
	}
	if res.Action != nelm.ActionSkip || res.Revision != 1 {
		t.Fatalf("no-op upgrade result = %+v, want skip at revision 1", res)
	}
	if n := len(history(t, ns, "lifecycle")); n != 1 {
		t.Fatalf("revisions after no-op upgrade = %d, want 1", n)
	}
	waitForEvent(t, pkg, nelm.ReasonUpToDate)

	// New values: a new revision that applies them.
	res, err = s.Upgrade(ctx, pkg, ch, map[string]any{"value": "two"})
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if res.Action != nelm.ActionUpgrade || res.Revision != 2 {
		t.Fatalf("upgrade result = %+v, want upgrade to revision 2", res)
	}
	if cm, _ := getConfigMap(t, ns, "lifecycle-0"); cm.Data["value"] != "two" {
		t.Fatalf("ConfigMap value after upgrade = %q, want two", cm.Data["value"])
	}
	waitForEvent(t, pkg, nelm.ReasonUpgraded)

	// A new chart version with the same output is a new revision too.
	ch2 := chartOf("lifecycle", "1.0.1", map[string]string{"cm.yaml": configMaps(2)})
	if res, err = s.Upgrade(ctx, pkg, ch2, map[string]any{"value": "two"}); err != nil || res.Revision != 3 {
		t.Fatalf("upgrade to chart 1.0.1 = %+v, %v; want revision 3", res, err)
	}

	if err := s.Delete(ctx, pkg); err != nil {
		t.Fatalf("delete: %v", err)
	}
	for _, name := range []string{"lifecycle-0", "lifecycle-1"} {
		if _, ok := getConfigMap(t, ns, name); ok {
			t.Errorf("ConfigMap %s still exists after delete", name)
		}
	}
	if rel, err := s.Release(ctx, pkg); err != nil || rel != nil {
		t.Fatalf("release after delete = %v, %v; want none", rel, err)
	}
	if s.Monitoring(pkg) {
		t.Error("drift monitor still runs after delete")
	}
	waitForEvent(t, pkg, nelm.ReasonUninstalled)
	// Deleting again: nothing to do, no error.
	if err := s.Delete(ctx, pkg); err != nil {
		t.Fatalf("delete of a missing release: %v", err)
	}
}

func TestUpgradeKeepsMaxHistory(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{MaxHistory: 2})
	pkg := newPackage(t, ns, "history")
	ch := chartOf("history", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	for i := range 4 {
		if _, err := s.Upgrade(ctxFor(t), pkg, ch, map[string]any{"value": i}); err != nil {
			t.Fatal(err)
		}
	}
	h := history(t, ns, "history")
	if len(h) != 2 || h[len(h)-1].Version != 4 {
		t.Fatalf("kept revisions = %d (last %d), want 2 ending at 4", len(h), h[len(h)-1].Version)
	}
}

func TestUpgradeRecoversPendingRelease(t *testing.T) {
	tests := []struct {
		name   string
		status helmrelease.Status
		// install first: the pending revision follows a deployed one.
		installFirst bool
		wantRevision int
	}{
		{name: "pending-upgrade", status: helmrelease.StatusPendingUpgrade, installFirst: true, wantRevision: 3},
		{name: "pending-rollback", status: helmrelease.StatusPendingRollback, installFirst: true, wantRevision: 3},
		{name: "pending-install", status: helmrelease.StatusPendingInstall, wantRevision: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := env.Namespace(t)
			s := newService(t, nelm.Options{})
			pkg := newPackage(t, ns, "crashed")
			ctx := ctxFor(t)
			ch := chartOf("crashed", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
			cfg := helmConfig(t, ns)

			// Simulate a crash: a revision stored as pending whose
			// operation never finished.
			pending := &helmrelease.Release{
				Name: "crashed", Namespace: ns, Version: 1, Chart: ch, Config: map[string]any{},
				Info:   &helmrelease.Info{Status: tt.status},
				Labels: map[string]string{nelm.LabelManagedBy: nelm.ManagedByValue},
			}
			if tt.installFirst {
				res, err := s.Upgrade(ctx, pkg, ch, nil)
				if err != nil {
					t.Fatal(err)
				}
				pending.Version = res.Revision + 1
			}
			if err := cfg.Releases.Create(pending); err != nil {
				t.Fatalf("store pending revision: %v", err)
			}

			res, err := s.Upgrade(ctx, pkg, ch, map[string]any{"value": "after-crash"})
			if err != nil {
				t.Fatalf("upgrade over a %s revision: %v", tt.status, err)
			}
			if !res.Unlocked || res.Revision != tt.wantRevision {
				t.Fatalf("result = %+v, want unlocked and revision %d", res, tt.wantRevision)
			}
			h := history(t, ns, "crashed")
			last := h[len(h)-1]
			if last.Info.Status != helmrelease.StatusDeployed {
				t.Fatalf("last revision status = %s, want deployed", last.Info.Status)
			}
			for _, r := range h[:len(h)-1] {
				if r.Info.Status.IsPending() {
					t.Errorf("revision %d still %s", r.Version, r.Info.Status)
				}
			}
			if cm, _ := getConfigMap(t, ns, "crashed-0"); cm.Data["value"] != "after-crash" {
				t.Fatalf("ConfigMap value = %q, want after-crash", cm.Data["value"])
			}
			waitForEvent(t, pkg, nelm.ReasonUnlocked)
		})
	}
}

func TestUpgradeKubeVersionConstraint(t *testing.T) {
	tests := []struct {
		constraint string
		wantErr    string
	}{
		{constraint: ">=1.36.0-0"},
		{constraint: "~1.36.3"},
		{constraint: "<1.30.0-0", wantErr: "incompatible with Kubernetes v1.36.3"},
		{constraint: ">=1.37.0-0", wantErr: "chart requires kubeVersion: >=1.37.0-0"},
	}
	for _, tt := range tests {
		t.Run(tt.constraint, func(t *testing.T) {
			ns := env.Namespace(t)
			s := newService(t, nelm.Options{})
			pkg := newPackage(t, ns, "versioned")
			ch := chartOf("versioned", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
			ch.Metadata.KubeVersion = tt.constraint
			_, err := s.Upgrade(ctxFor(t), pkg, ch, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("kubeVersion %q against v1.36.3: %v", tt.constraint, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if h := history(t, ns, "versioned"); len(h) != 0 {
				t.Fatalf("a refused chart left %d revisions", len(h))
			}
		})
	}
}

func TestUpgradeStripsGadgetFiles(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "big")
	// 1.5 MiB that gzip cannot shrink: with it the release Secret would
	// pass the API server's 1 MiB limit.
	blob := make([]byte, 3<<19)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(blob)
	ch := chartOf("big", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	ch.Files = []*helmchart.File{
		{Name: "gadget/program.bpf.o", Data: blob},
		{Name: "gadget/gadget.yaml", Data: []byte("name: big\n")},
		{Name: "README.md", Data: []byte("kept\n")},
	}
	// The premise: stored whole, the chart does not fit a release Secret.
	inst := helmaction.NewInstall(helmConfig(t, ns))
	inst.Namespace, inst.ReleaseName = ns, "big-unstripped"
	if _, err := inst.RunWithContext(ctxFor(t), ch, nil); err == nil {
		t.Fatal("plain Helm stored a 1.5 MiB gadget in a release Secret; the test proves nothing")
	}

	if _, err := s.Upgrade(ctxFor(t), pkg, ch, nil); err != nil {
		t.Fatalf("install of a chart with a 1.5 MiB gadget: %v", err)
	}
	var secret corev1.Secret
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "sh.helm.release.v1.big.v1"}, &secret); err != nil {
		t.Fatalf("release Secret: %v", err)
	}
	if n := len(secret.Data["release"]); n > 64<<10 {
		t.Fatalf("release Secret holds %d bytes, want the gadget stripped (well under 64 KiB)", n)
	}
	rel := history(t, ns, "big")[0]
	var names []string
	for _, f := range rel.Chart.Files {
		names = append(names, f.Name)
	}
	if len(names) != 1 || names[0] != "README.md" {
		t.Fatalf("stored chart files = %v, want only README.md", names)
	}
	if len(ch.Files) != 3 {
		t.Fatalf("the caller's chart was changed: %d files left, want 3", len(ch.Files))
	}
}

func TestUpgradeReadinessTimeoutNamesObject(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{Timeout: 3 * time.Second})
	pkg := newPackage(t, ns, "slow")
	ch := chartOf("slow", "1.0.0", map[string]string{"deploy.yaml": nelmtest.NeverReady})
	_, err := s.Upgrade(ctxFor(t), pkg, ch, nil)
	if !errors.Is(err, nelm.ErrNotReady) {
		t.Fatalf("error = %v, want ErrNotReady", err)
	}
	for _, want := range []string{"Deployment " + ns + "/never-ready is not ready", "0 of 1 replicas ready"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want it to contain %q", err, want)
		}
	}
	waitForEvent(t, pkg, nelm.ReasonWaiting)
	msg := waitForEvent(t, pkg, nelm.ReasonNotReady)
	if !strings.Contains(msg, "never-ready") {
		t.Fatalf("Event message %q does not name the Deployment", msg)
	}
	h := history(t, ns, "slow")
	if len(h) != 1 || h[0].Info.Status != helmrelease.StatusFailed {
		t.Fatalf("release after timeout: %d revisions, want 1 failed", len(h))
	}
}

func TestUpgradeRefusesForeignRelease(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	ctx := ctxFor(t)
	ch := chartOf("taken", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})

	// Someone installs a release of the same name with plain Helm.
	inst := helmaction.NewInstall(helmConfig(t, ns))
	inst.Namespace, inst.ReleaseName = ns, "taken"
	if _, err := inst.RunWithContext(ctx, ch, map[string]any{"value": "theirs"}); err != nil {
		t.Fatalf("foreign install: %v", err)
	}

	pkg := newPackage(t, ns, "taken")
	_, err := s.Upgrade(ctx, pkg, ch, map[string]any{"value": "ours"})
	if !errors.Is(err, nelm.ErrNotOwned) || !strings.Contains(err.Error(), nelm.AdoptAnnotation) {
		t.Fatalf("upgrade over a foreign release: %v, want ErrNotOwned naming %s", err, nelm.AdoptAnnotation)
	}
	if err := s.Delete(ctx, pkg); !errors.Is(err, nelm.ErrNotOwned) {
		t.Fatalf("delete of a foreign release: %v, want ErrNotOwned", err)
	}
	h := history(t, ns, "taken")
	if len(h) != 1 || h[0].Info.Status != helmrelease.StatusDeployed {
		t.Fatalf("foreign release touched: %d revisions", len(h))
	}
	if cm, ok := getConfigMap(t, ns, "taken-0"); !ok || cm.Data["value"] != "theirs" {
		t.Fatalf("foreign ConfigMap changed: %v", cm.Data)
	}
	waitForEvent(t, pkg, nelm.ReasonRefused)

	// With the explicit opt-in the release is taken over.
	pkg.AdoptRelease = true
	res, err := s.Upgrade(ctx, pkg, ch, map[string]any{"value": "ours"})
	if err != nil || res.Revision != 2 {
		t.Fatalf("adopting upgrade = %+v, %v; want revision 2", res, err)
	}
	if l := history(t, ns, "taken")[1].Labels[nelm.LabelManagedBy]; l != nelm.ManagedByValue {
		t.Fatalf("adopted release label %s = %q", nelm.LabelManagedBy, l)
	}
}

func TestUpgradeReinstallsAfterUninstallWithHistory(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "kept")
	ctx := ctxFor(t)
	ch := chartOf("kept", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	// Someone runs `helm uninstall --keep-history`.
	un := helmaction.NewUninstall(helmConfig(t, ns))
	un.KeepHistory = true
	if _, err := un.Run("kept"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Upgrade(ctx, pkg, ch, nil)
	if err != nil {
		t.Fatalf("upgrade after uninstall with history: %v", err)
	}
	if res.Action != nelm.ActionInstall || res.Revision != 2 {
		t.Fatalf("result = %+v, want install of revision 2", res)
	}
	if _, ok := getConfigMap(t, ns, "kept-0"); !ok {
		t.Fatal("ConfigMap kept-0 not recreated")
	}
}

func TestUpgradeWithoutRecorderOrObject(t *testing.T) {
	ns := env.Namespace(t)
	s, err := nelm.New(env.Config, nelm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.StopMonitors()
	pkg := nelm.Package{Namespace: ns, Name: "quiet"}
	ch := chartOf("quiet", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	if _, err := s.Upgrade(ctxFor(t), pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	// Without a recorder or a GadgetPackage object the release still
	// installs, and nothing is reported about an object that is not there.
	var cm corev1.ConfigMap
	if err := env.Client.Get(ctxFor(t), client.ObjectKey{Namespace: ns, Name: "quiet-0"}, &cm); err != nil {
		t.Fatalf("the release's ConfigMap after Upgrade: %v", err)
	}
	if cm.Data["value"] != "none" {
		t.Fatalf("ConfigMap data %v, want value=none", cm.Data)
	}
	if err := s.Delete(ctxFor(t), pkg); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctxFor(t), client.ObjectKey{Namespace: ns, Name: "quiet-0"}, &cm); !apierrors.IsNotFound(err) {
		t.Fatalf("the release's ConfigMap after Delete: %v, want NotFound", err)
	}
	var events corev1.EventList
	if err := env.Client.List(ctxFor(t), &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(events.Items) != 0 {
		t.Fatalf("%d Events without a recorder, want none: first %q", len(events.Items), events.Items[0].Message)
	}
}

func TestUpgradeSerializesOnePackage(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "busy")
	ch := chartOf("busy", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Upgrade(ctxFor(t), pkg, ch, map[string]any{"value": i})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent upgrade of one package: %v", err)
		}
	}
	h := history(t, ns, "busy")
	if len(h) != n {
		t.Fatalf("revisions = %d, want %d (one per distinct values)", len(h), n)
	}
	if last := h[len(h)-1]; last.Info.Status != helmrelease.StatusDeployed {
		t.Fatalf("last revision %s", last.Info.Status)
	}
}

func TestServiceRenderUsesLiveCluster(t *testing.T) {
	s := newService(t, nelm.Options{})
	pkg := nelm.Package{Namespace: "anywhere", Name: "live"}
	ch := chartOf("live", "1.0.0", map[string]string{"cm.yaml": `kube: {{ .Capabilities.KubeVersion.Version }}
crd: {{ .Capabilities.APIVersions.Has "gadgetpm.io/v1alpha1/GadgetPackage" }}
ns: {{ .Release.Namespace }}
`})
	r, err := s.Render(ctxFor(t), pkg, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kube: v1.36.3", "crd: true", "ns: anywhere"} {
		if !strings.Contains(r.Manifest, want) {
			t.Errorf("manifest lacks %q:\n%s", want, r.Manifest)
		}
	}
}

func TestDeleteWaitsForObjectsToGo(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{Timeout: 2 * time.Second})
	pkg := newPackage(t, ns, "held")
	ctx := ctxFor(t)
	ch := chartOf("held", "1.0.0", map[string]string{
		"held.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n",
		"kept.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  annotations:\n    helm.sh/resource-policy: keep\n",
	})
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}

	err := s.Delete(ctx, pkg)
	if err == nil {
		t.Fatal("delete returned while a ConfigMap was held by a finalizer")
	}
	for _, want := range []string{"ConfigMap " + ns + "/held", "example.com/hold"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "/kept") {
		t.Fatalf("error %q names the ConfigMap kept by policy", err)
	}
	if rel, _ := s.Release(ctx, pkg); rel == nil {
		t.Fatal("release record gone before its objects; a retry could not wait for them")
	}

	// The finalizer's owner lets go; the retried Delete finishes.
	held, _ := getConfigMap(t, ns, "held")
	held.Finalizers = nil
	if err := env.Client.Update(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, pkg); err != nil {
		t.Fatalf("retried delete: %v", err)
	}
	if rel, err := s.Release(ctx, pkg); rel != nil || err != nil {
		t.Fatalf("release after delete = %v, %v; want none", rel, err)
	}
	if _, ok := getConfigMap(t, ns, "held"); ok {
		t.Fatal("ConfigMap held still exists")
	}
	if _, ok := getConfigMap(t, ns, "kept"); !ok {
		t.Fatal("ConfigMap kept by helm.sh/resource-policy was deleted")
	}
}
