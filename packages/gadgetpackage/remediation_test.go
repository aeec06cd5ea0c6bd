package gadgetpackage_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	helmrelease "helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
	"github.com/gadgetpm/gadgetpm/queue"
)

// helmReleaser applies releases with the real Helm release service, as the
// coordinator does.
type helmReleaser struct{ s *nelm.Service }

func (r helmReleaser) pkg(rel manager.Release) nelm.Package {
	return nelm.Package{Namespace: rel.Namespace, Name: rel.Name, ServiceAccount: rel.ServiceAccount,
		InstallRemediation: rel.InstallRemediation, UpgradeRemediation: rel.UpgradeRemediation, DriftDetection: rel.DriftDetection,
		Object: &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "GadgetPackage", Namespace: rel.Namespace, Name: rel.Name}}
}

func (r helmReleaser) Upgrade(ctx context.Context, rel manager.Release) (int, error) {
	res, err := r.s.Upgrade(ctx, r.pkg(rel), rel.Chart, rel.Values)
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

func (r helmReleaser) Delete(ctx context.Context, rel manager.Release) error {
	return r.s.Delete(ctx, r.pkg(rel))
}

func newHelmReleaser(t *testing.T) helmReleaser {
	t.Helper()
	// Helm waits a second for a Deployment that never becomes ready.
	s, err := nelm.New(env.Config, nelm.Options{Timeout: time.Second, Recorder: nelmtest.Recorder(t, env.Config, env.Scheme)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.StopMonitors)
	return helmReleaser{s}
}

// startWithHelm runs the controller with the real Helm release service; it
// returns the attempts of the last run task given up on.
func startWithHelm(t *testing.T) *atomic.Int64 {
	var runAttempts atomic.Int64
	startWith(t, setup{releaser: newHelmReleaser(t), tap: func(ev queue.Event) {
		if strings.HasPrefix(ev.Task, "run ") && ev.Kind == queue.Failed {
			runAttempts.Store(int64(ev.Attempts))
		}
	}})
	return &runAttempts
}

func TestInstallRemediationRetriesAreTheAttemptLimit(t *testing.T) {
	runAttempts := startWithHelm(t)
	ns := env.Namespace(t)
	repoName, _ := fileRepo(t, ns, packagetest.Source{Name: "broken", Version: "1.0.0", Files: map[string]string{"templates/deploy.yaml": nelmtest.NeverReady}})
	gp := &v1alpha1.GadgetPackage{}
	gp.Namespace, gp.Name = ns, "broken"
	gp.Spec = v1alpha1.GadgetPackageSpec{Repository: repoName, Package: "broken",
		Install: &v1alpha1.InstallSpec{Remediation: &v1alpha1.InstallRemediation{Retries: 3}}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}

	// The controller's default is 2 attempts; retries 3 gives the install 4,
	// each failed one uninstalled before the next.
	gp = waitFor(t, ns, "broken", "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
	msg := condition(gp, v1alpha1.ConditionStalled).Message
	for _, w := range []string{"after 4 attempt(s)", "Deployment " + ns + "/never-ready is not ready", "remediated: uninstalled release broken"} {
		if !strings.Contains(msg, w) {
			t.Errorf("Stalled message %q does not say %q", msg, w)
		}
	}
	if n := runAttempts.Load(); n != 4 {
		t.Errorf("attempts of the run task = %d, want 4", n)
	}
	env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Kind: "GadgetPackage", Name: "broken", Reason: v1alpha1.ReasonRemediated,
		Parts: []string{"Uninstalled release broken after its failed install"}})
	if h := nelmtest.History(t, env.Config, ns, "broken"); len(h) != 0 {
		t.Errorf("release after the remediated installs has %d revisions, want none", len(h))
	}
}

func TestUpgradeRemediationRollsBackEachFailedAttempt(t *testing.T) {
	runAttempts := startWithHelm(t)
	ns := env.Namespace(t)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  version: {{ .Chart.Version | quote }}\n"
	dir := t.TempDir()
	out := packagetest.Repo(t, dir, packagetest.Source{Name: "agent", Version: "1.0.0", Files: map[string]string{"templates/cm.yaml": cm}})
	repoName := strings.ToLower(ns) + "-repo"
	createRepo(t, repoName, "file://"+out)
	gp := &v1alpha1.GadgetPackage{}
	gp.Namespace, gp.Name = ns, "agent"
	gp.Spec = v1alpha1.GadgetPackageSpec{Repository: repoName, Package: "agent",
		Upgrade: &v1alpha1.UpgradeSpec{Remediation: &v1alpha1.UpgradeRemediation{Retries: 2}}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ns, "agent", "Ready at revision 1", func(gp *v1alpha1.GadgetPackage) bool {
		return isTrue(gp, v1alpha1.ConditionReady) && gp.Status.HelmRevision == 1
	})

	// 1.1.0 adds a Deployment that never becomes ready: each of the 3
	// attempts (retries 2) upgrades, fails and is rolled back to 1.0.0's
	// revision.
	packagetest.Write(t, dir+"/more/a", packagetest.Source{Name: "agent", Version: "1.1.0",
		Files: map[string]string{"templates/cm.yaml": cm, "templates/deploy.yaml": nelmtest.NeverReady}})
	if _, err := chartrepo.Build(context.Background(), dir+"/more", out, chartrepo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	gp = waitFor(t, ns, "agent", "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
	msg := condition(gp, v1alpha1.ConditionStalled).Message
	for _, w := range []string{"after 3 attempt(s)", "remediated: rolled release agent back from failed revision 6 to revision 5 (now revision 7)"} {
		if !strings.Contains(msg, w) {
			t.Errorf("Stalled message %q does not say %q", msg, w)
		}
	}
	if n := runAttempts.Load(); n != 3 {
		t.Errorf("attempts of the run task = %d, want 3", n)
	}
	// Revisions: 1 deployed; then three times a failed upgrade and its
	// rollback. The objects are 1.0.0's.
	h := nelmtest.History(t, env.Config, ns, "agent")
	last := h[len(h)-1]
	if last.Version != 7 || last.Info.Status != helmrelease.StatusDeployed || last.Chart.Metadata.Version != "1.0.0" {
		t.Errorf("last revision = %d %s of chart %s, want 7 deployed of 1.0.0", last.Version, last.Info.Status, last.Chart.Metadata.Version)
	}
	var obj corev1.ConfigMap
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "agent-cm"}, &obj); err != nil || obj.Data["version"] != "1.0.0" {
		t.Errorf("ConfigMap agent-cm = %v, %v; want 1.0.0's", obj.Data, err)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "never-ready"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment never-ready after the rollbacks: %v, want not found", err)
	}
	env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Kind: "GadgetPackage", Name: "agent", Reason: v1alpha1.ReasonRemediated,
		Parts: []string{"Rolled release agent back from failed revision 2 to revision 1 (now revision 3)"}})
}
