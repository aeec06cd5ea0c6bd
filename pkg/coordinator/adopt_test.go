package coordinator_test

import (
	"context"
	"strings"
	"testing"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	helmrelease "helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

func isStalled(gp *v1alpha1.GadgetPackage) bool {
	c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
	return c != nil && c.Status == metav1.ConditionTrue
}

// A GadgetPackage whose name is taken by someone else's Helm release is
// refused with a status and an Event naming the release and the way out;
// the adopt-release annotation takes the release over, and the neighbour
// package runs throughout.
func TestForeignReleaseIsRefusedUntilAdopted(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  owner: gadgetpm\n"
	repoDir := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "taken", Files: map[string]string{"templates/cm.yaml": cm}},
		packagetest.Source{Name: "fine", Files: map[string]string{"templates/cm.yaml": cm}},
	)

	// Someone installs a release named "taken" with plain Helm.
	theirs := &helmchart.Chart{Metadata: &helmchart.Metadata{APIVersion: "v2", Name: "theirs", Version: "3.0.0"},
		Templates: []*helmchart.File{{Name: "templates/cm.yaml",
			Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-theirs\ndata:\n  owner: someone\n")}}}
	inst := helmaction.NewInstall(nelmtest.HelmConfig(t, env.Config, ns))
	inst.Namespace, inst.ReleaseName = ns, "taken"
	if _, err := inst.RunWithContext(ctx, theirs, nil); err != nil {
		t.Fatalf("install the foreign release: %v", err)
	}

	createRepo(t, "adopt-"+ns, repoDir)
	start(t)
	createPackage(t, ns, "taken", "adopt-"+ns)
	createPackage(t, ns, "fine", "adopt-"+ns)

	gp := waitFor(t, ns, "taken", "Stalled", isStalled)
	ready := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady)
	for _, want := range []string{"release " + ns + "/taken", "not made by gadgetpm", v1alpha1.AdoptReleaseAnnotation + "=true", "after 1 attempt(s)"} {
		if ready == nil || !strings.Contains(ready.Message, want) {
			t.Errorf("Ready of taken = %+v; want a message saying %q", ready, want)
		}
	}
	var events corev1.EventList
	if err := env.Client.List(ctx, &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, e := range events.Items {
		if e.InvolvedObject.Name == "taken" && e.Type == corev1.EventTypeWarning && e.Reason == nelm.ReasonRefused &&
			strings.Contains(e.Message, "release "+ns+"/taken") && strings.Contains(e.Message, nelm.AdoptAnnotation) {
			refused = true
		}
	}
	if !refused {
		t.Errorf("no Warning Event %s on taken naming the release and %s", nelm.ReasonRefused, nelm.AdoptAnnotation)
	}
	// The foreign release and its objects are untouched.
	if h := nelmtest.History(t, env.Config, ns, "taken"); len(h) != 1 || h[0].Info.Status != helmrelease.StatusDeployed || h[0].Chart.Name() != "theirs" {
		t.Fatalf("foreign release changed while refused: %d revision(s)", len(h))
	}
	var obj corev1.ConfigMap
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "taken-theirs"}, &obj); err != nil {
		t.Fatalf("foreign ConfigMap: %v", err)
	}
	// Nothing else stalls.
	if gp := waitFor(t, ns, "fine", "Running", running); isStalled(gp) {
		t.Errorf("fine is Stalled: %+v", gp.Status)
	}

	// The explicit setting: the package takes the release over.
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "taken"}, gp); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(gp.DeepCopy())
	metav1.SetMetaDataAnnotation(&gp.ObjectMeta, v1alpha1.AdoptReleaseAnnotation, "true")
	if err := env.Client.Patch(ctx, gp, patch); err != nil {
		t.Fatal(err)
	}
	gp = waitFor(t, ns, "taken", "Running after adoption", running)
	if isStalled(gp) || gp.Status.HelmRevision != 2 {
		t.Errorf("taken after adoption: %+v; want revision 2 and not Stalled", gp.Status)
	}
	h := nelmtest.History(t, env.Config, ns, "taken")
	if len(h) != 2 || h[1].Labels[nelm.LabelManagedBy] != nelm.ManagedByValue || h[1].Chart.Name() != "taken" {
		t.Fatalf("release after adoption: %d revision(s); want revision 2 of chart taken labelled %s=%s", len(h), nelm.LabelManagedBy, nelm.ManagedByValue)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "taken-cm"}, &obj); err != nil || obj.Data["owner"] != "gadgetpm" {
		t.Fatalf("the package's ConfigMap after adoption: %v %v", obj.Data, err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "taken-theirs"}, &obj); !apierrors.IsNotFound(err) {
		t.Errorf("the foreign chart's ConfigMap outlived the adopting upgrade: %v", err)
	}
	if gp := waitFor(t, ns, "fine", "Running", running); isStalled(gp) || gp.Status.HelmRevision != 1 {
		t.Errorf("fine changed while taken was adopted: %+v", gp.Status)
	}
}
