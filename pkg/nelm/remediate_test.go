package nelm_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	helmrelease "helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// statuses lists the release's revisions as "N:status", oldest first.
func statuses(t *testing.T, ns, name string) string {
	t.Helper()
	var out []string
	for _, r := range history(t, ns, name) {
		out = append(out, strconv.Itoa(r.Version)+":"+string(r.Info.Status))
	}
	return strings.Join(out, " ")
}

func deploymentExists(t *testing.T, ns, name string) bool {
	t.Helper()
	err := env.Client.Get(ctxFor(t), client.ObjectKey{Namespace: ns, Name: name}, &appsv1.Deployment{})
	if client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	return err == nil
}

func TestFailedUpgradeIsRemediated(t *testing.T) {
	good := map[string]string{"cm.yaml": configMaps(1)}
	bad := map[string]string{"cm.yaml": configMaps(1), "deploy.yaml": nelmtest.NeverReady}
	tests := []struct {
		name     string
		release  string
		strategy v1alpha1.RemediationStrategy
		// after the failed upgrade: the release's revisions, and the
		// Remediated Event's words
		history string
		event   []string
		// the error's words, which the package's status shows
		errWords []string
		// the next attempt's action, with the cause fixed
		next nelm.Action
	}{
		{name: "default strategy rolls back", release: "rollback", strategy: "", history: "1:superseded 2:failed 3:deployed",
			event:    []string{"Rolled release rollback back from failed revision 2 to revision 1 (now revision 3)"},
			errWords: []string{"remediated: rolled release rollback back from failed revision 2 to revision 1 (now revision 3)"},
			next:     nelm.ActionUpgrade},
		{name: "uninstall", release: "uninstall", strategy: v1alpha1.RemediationUninstall, history: "",
			event:    []string{"Uninstalled release uninstall after its failed upgrade (revision 2)"},
			errWords: []string{"remediated: uninstalled release uninstall (failed revision 2), the next attempt installs it again"},
			next:     nelm.ActionInstall},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			s := newService(t, nelm.Options{Timeout: 3 * time.Second})
			name := tc.release
			pkg := newPackage(t, ns, name)
			pkg.UpgradeRemediation = &v1alpha1.UpgradeRemediation{Retries: 2, Strategy: tc.strategy}
			ctx := ctxFor(t)
			if _, err := s.Upgrade(ctx, pkg, chartOf(name, "1.0.0", good), map[string]any{"value": "one"}); err != nil {
				t.Fatal(err)
			}

			_, err := s.Upgrade(ctx, pkg, chartOf(name, "2.0.0", bad), map[string]any{"value": "two"})
			if !errors.Is(err, nelm.ErrNotReady) || errors.Is(err, nelm.ErrRemediationFailed) {
				t.Fatalf("failed upgrade: error = %v, want ErrNotReady, remediated", err)
			}
			for _, w := range tc.errWords {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if got := statuses(t, ns, name); got != tc.history {
				t.Errorf("revisions after the remediation = %q, want %q", got, tc.history)
			}
			waitForEventWith(t, pkg, nelm.ReasonRemediated, tc.event...)
			// The objects are as before the upgrade: the rollback restored
			// revision 1's; the uninstall removed them.
			cm, ok := getConfigMap(t, ns, name+"-0")
			switch {
			case tc.strategy == v1alpha1.RemediationUninstall && ok:
				t.Errorf("ConfigMap %s-0 still exists after the uninstall", name)
			case tc.strategy != v1alpha1.RemediationUninstall && (!ok || cm.Data["value"] != "one"):
				t.Errorf("ConfigMap %s-0 after the rollback = %v (exists %v), want value one", name, cm.Data, ok)
			}
			if deploymentExists(t, ns, "never-ready") {
				t.Error("the failed revision's Deployment never-ready is still there")
			}

			// The cause fixed, the next attempt succeeds.
			res, err := s.Upgrade(ctx, pkg, chartOf(name, "2.0.1", good), map[string]any{"value": "two"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != tc.next {
				t.Errorf("next attempt = %s, want %s", res.Action, tc.next)
			}
			if cm, _ := getConfigMap(t, ns, name+"-0"); cm.Data["value"] != "two" {
				t.Errorf("ConfigMap value after the fixed upgrade = %q, want two", cm.Data["value"])
			}
		})
	}
}

func TestFailedInstallIsUninstalledBeforeTheRetry(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{Timeout: 3 * time.Second})
	pkg := newPackage(t, ns, "fresh")
	pkg.InstallRemediation = &v1alpha1.InstallRemediation{Retries: 1}
	ctx := ctxFor(t)

	_, err := s.Upgrade(ctx, pkg, chartOf("fresh", "1.0.0", map[string]string{"cm.yaml": configMaps(1), "deploy.yaml": nelmtest.NeverReady}), nil)
	if !errors.Is(err, nelm.ErrNotReady) || !strings.Contains(err.Error(), "remediated: uninstalled release fresh (failed revision 1)") {
		t.Fatalf("failed install: error = %v, want ErrNotReady, remediated by an uninstall", err)
	}
	if h := history(t, ns, "fresh"); len(h) != 0 {
		t.Fatalf("release after the remediated install has %d revisions, want none", len(h))
	}
	if _, ok := getConfigMap(t, ns, "fresh-0"); ok || deploymentExists(t, ns, "never-ready") {
		t.Fatal("objects of the failed install are left")
	}
	waitForEventWith(t, pkg, nelm.ReasonRemediated, "Uninstalled release fresh after its failed install (revision 1)")

	// The retry, with the cause fixed, is a clean install: revision 1.
	res, err := s.Upgrade(ctx, pkg, chartOf("fresh", "1.0.1", map[string]string{"cm.yaml": configMaps(1)}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != nelm.ActionInstall || res.Revision != 1 {
		t.Fatalf("retry = %+v, want an install of revision 1", res)
	}
}

func TestFailedRemediationSaysWhatToDo(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{Timeout: 3 * time.Second})
	pkg := newPackage(t, ns, "stuck")
	ctx := ctxFor(t)
	bad := map[string]string{"deploy.yaml": nelmtest.NeverReady}
	// An install without remediation fails and stays failed: no revision
	// was ever deployed, so a rollback has nowhere to go.
	if _, err := s.Upgrade(ctx, pkg, chartOf("stuck", "1.0.0", bad), nil); !errors.Is(err, nelm.ErrNotReady) {
		t.Fatalf("install: %v, want ErrNotReady", err)
	}
	pkg.UpgradeRemediation = &v1alpha1.UpgradeRemediation{Strategy: v1alpha1.RemediationRollback}
	_, err := s.Upgrade(ctx, pkg, chartOf("stuck", "1.0.1", bad), nil)
	if !errors.Is(err, nelm.ErrRemediationFailed) {
		t.Fatalf("error = %v, want ErrRemediationFailed", err)
	}
	for _, w := range []string{"no revision before 2 was deployed", "helm history stuck -n " + ns, v1alpha1.RetryAnnotation} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	waitForEventWith(t, pkg, nelm.ReasonRemediationFailed, "rollback of release stuck", "helm history stuck")
	if h := history(t, ns, "stuck"); len(h) != 2 || h[1].Info.Status != helmrelease.StatusFailed {
		t.Fatalf("release after the failed remediation: %q, want 2 revisions, the last failed", statuses(t, ns, "stuck"))
	}
}
