package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
)

const driftedChartCM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  value: one\n"

// setValue changes the package's ConfigMap as a person with kubectl edit
// would.
func setValue(t *testing.T, ns, name, value string) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "edit ConfigMap "+ns+"/"+name, func() error {
		var cm corev1.ConfigMap
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
			return err
		}
		patch := client.MergeFrom(cm.DeepCopy())
		cm.Data["value"] = value
		return env.Client.Patch(context.Background(), &cm, patch, client.FieldOwner("kubectl-edit"))
	})
}

// editSpec changes the GadgetPackage's spec, as kubectl edit would.
func editSpec(t *testing.T, ns, name string, edit func(*v1alpha1.GadgetPackageSpec)) {
	t.Helper()
	eventually.NoError(t, 30*time.Second, "edit GadgetPackage "+ns+"/"+name, func() error {
		var cur v1alpha1.GadgetPackage
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cur); err != nil {
			return err
		}
		edit(&cur.Spec)
		return env.Client.Update(context.Background(), &cur)
	})
}

func drifted(status metav1.ConditionStatus, reason string, parts ...string) func(*v1alpha1.GadgetPackage) bool {
	return func(gp *v1alpha1.GadgetPackage) bool {
		c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionDrifted)
		if c == nil || c.Status != status || c.Reason != reason {
			return false
		}
		for _, p := range parts {
			if !strings.Contains(c.Message, p) {
				return false
			}
		}
		return true
	}
}

// A release object changed by hand shows in the package's status as
// Drifted, naming the object and the field; the condition survives a
// restart of the operator, clears at the first check after the change is
// undone, and in mode enabled records the correction.
func TestDriftedCondition(t *testing.T) {
	ns := env.Namespace(t)
	repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "watched", Files: map[string]string{"templates/cm.yaml": driftedChartCM}})
	createRepo(t, "drift-"+ns, repoDir)
	fast := func(o *coordinator.Options) { o.DriftInterval = 200 * time.Millisecond }
	_, _, stop := startWith(t, fast)
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: "watched", Namespace: ns},
		Spec: v1alpha1.GadgetPackageSpec{Repository: "drift-" + ns, Package: "watched", Version: "*",
			DriftDetection: &v1alpha1.DriftDetection{Mode: v1alpha1.DriftDetectionWarn}}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ns, "watched", "Running", running)

	// warn: the monitor's check reports the change in status.
	setValue(t, ns, "watched-cm", "by-hand")
	gp = waitFor(t, ns, "watched", "Drifted True naming the ConfigMap", drifted(metav1.ConditionTrue, v1alpha1.ReasonDriftDetected,
		"ConfigMap "+ns+"/watched-cm at /data/value", "not corrected"))
	since := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionDrifted).LastTransitionTime

	// A restart keeps it: status is not reset while the new process plans
	// the package again, and its checks find the same drift.
	stop()
	startWith(t, fast)
	eventually.True(t, 60*time.Second, "the restarted operator to plan the package", func() bool {
		var got v1alpha1.GadgetPackage
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "watched"}, &got); err != nil {
			return false
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionDrifted)
		if c == nil || c.Status != metav1.ConditionTrue || !c.LastTransitionTime.Equal(&since) {
			t.Fatalf("Drifted after the restart = %+v, want True since %v", c, since)
		}
		return running(&got) && got.Status.LastAttempt == nil
	})
	if gp := waitFor(t, ns, "watched", "Running", running); !drifted(metav1.ConditionTrue, v1alpha1.ReasonDriftDetected, "watched-cm at /data/value")(gp) {
		t.Fatalf("Drifted after the restart: %+v", gp.Status.Conditions)
	}

	// Undone by hand: the next check clears it.
	setValue(t, ns, "watched-cm", "one")
	waitFor(t, ns, "watched", "Drifted False", drifted(metav1.ConditionFalse, v1alpha1.ReasonNoDrift, "match the manifest"))

	// enabled: a change is set back and the correction recorded.
	editSpec(t, ns, "watched", func(s *v1alpha1.GadgetPackageSpec) { s.DriftDetection.Mode = v1alpha1.DriftDetectionEnabled })
	setValue(t, ns, "watched-cm", "again")
	waitFor(t, ns, "watched", "Drifted False, DriftCorrected", drifted(metav1.ConditionFalse, v1alpha1.ReasonDriftCorrected,
		"set back ConfigMap "+ns+"/watched-cm at /data/value"))
	eventually.True(t, 30*time.Second, "the value set back", func() bool {
		var cm corev1.ConfigMap
		return env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "watched-cm"}, &cm) == nil && cm.Data["value"] == "one"
	})

	// Drift detection turned off: no Drifted condition.
	editSpec(t, ns, "watched", func(s *v1alpha1.GadgetPackageSpec) { s.DriftDetection = nil })
	waitFor(t, ns, "watched", "no Drifted condition", func(gp *v1alpha1.GadgetPackage) bool {
		return gp.Status.ObservedGeneration == gp.Generation && meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionDrifted) == nil
	})
}
