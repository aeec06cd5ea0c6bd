package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// A package whose upgrade fails and whose rollback has nowhere to go (no
// revision was ever deployed) is Stalled at once with reason
// RemediationFailed, words saying what to do and a Warning Event; its
// neighbour runs.
func TestFailedRemediationStallsAtOnce(t *testing.T) {
	ns := env.Namespace(t)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  a: b\n"
	repoDir := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "stuck", Files: map[string]string{"templates/deploy.yaml": nelmtest.NeverReady}},
		packagetest.Source{Name: "fine", Files: map[string]string{"templates/cm.yaml": cm}},
	)
	createRepo(t, "remedy-"+ns, repoDir)
	startWith(t, func(o *coordinator.Options) {
		o.HelmTimeout = 2 * time.Second
		o.MaxAttempts = 5
	})
	// The first attempt installs and fails (no install remediation); the
	// second upgrades over the failed revision, fails, and its rollback
	// finds no deployed revision.
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Namespace: ns},
		Spec: v1alpha1.GadgetPackageSpec{Repository: "remedy-" + ns, Package: "stuck", Version: "*",
			Upgrade: &v1alpha1.UpgradeSpec{Remediation: &v1alpha1.UpgradeRemediation{Retries: 4}}}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
	createPackage(t, ns, "fine", "remedy-"+ns)

	gp = waitFor(t, ns, "stuck", "Stalled", isStalled)
	ready := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady)
	if ready == nil || ready.Reason != v1alpha1.ReasonRemediationFailed {
		t.Fatalf("Ready = %+v, want reason %s", ready, v1alpha1.ReasonRemediationFailed)
	}
	for _, want := range []string{"after 2 attempt(s)", "remediation failed: rollback of release stuck", "no revision before 2 was deployed",
		"helm history stuck -n " + ns, v1alpha1.RetryAnnotation} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q does not say %q", ready.Message, want)
		}
	}
	waitForWarning(t, ns, "stuck", v1alpha1.ReasonRemediationFailed, "helm history stuck")
	if gp := waitFor(t, ns, "fine", "Running", running); isStalled(gp) {
		t.Errorf("fine is Stalled: %+v", gp.Status)
	}
}
