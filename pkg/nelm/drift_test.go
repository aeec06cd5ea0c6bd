package nelm_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// driftChart has a ConfigMap with two keys and a Service, whose defaulted
// fields (clusterIP, protocol, ...) are no drift.
func driftChart(name string) map[string]string {
	return map[string]string{
		"cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
  labels: {tier: gadget}
data:
  value: one
  note: from-chart
`,
		"svc.yaml": `apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-svc
spec:
  selector: {app: x}
  ports:
  - port: 80
`,
	}
}

// editByHand changes the ConfigMap as a person with kubectl edit would.
func editByHand(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	cm, ok := getConfigMap(t, ns, name)
	if !ok {
		t.Fatalf("ConfigMap %s/%s missing", ns, name)
	}
	patch := client.MergeFrom(cm.DeepCopy())
	for k, v := range data {
		cm.Data[k] = v
	}
	cm.Labels["tier"] = "edited"
	if err := env.Client.Patch(context.Background(), cm, patch, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
}

func driftEvents(t *testing.T, ns string) []string {
	t.Helper()
	var list corev1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Reason == nelm.ReasonDriftDetected || ev.Reason == nelm.ReasonDriftCorrected {
			out = append(out, ev.Reason+": "+ev.Message)
		}
	}
	return out
}

func TestDriftWarnReportsModifiedFieldsAndLeavesThem(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{MonitorInterval: 100 * time.Millisecond, MonitorJitter: -1})
	pkg := newPackage(t, ns, "warned")
	pkg.DriftDetection = &v1alpha1.DriftDetection{Mode: v1alpha1.DriftDetectionWarn}
	ctx := ctxFor(t)
	if _, err := s.Upgrade(ctx, pkg, chartOf("warned", "1.0.0", driftChart("warned")), nil); err != nil {
		t.Fatal(err)
	}

	editByHand(t, ns, "warned-cm", map[string]string{"value": "by-hand"})
	// The monitor reports it, naming the object and the fields.
	waitForEventWith(t, pkg, nelm.ReasonDriftDetected, "ConfigMap "+ns+"/warned-cm at /data/value, /metadata/labels/tier", "not corrected")
	// A reconcile of the package reports it too, without a new revision.
	res, err := s.Upgrade(ctx, pkg, chartOf("warned", "1.0.0", driftChart("warned")), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []nelm.ObjectDrift{{Object: nelm.Object{Kind: "ConfigMap", Namespace: ns, Name: "warned-cm"}, Paths: []string{"/data/value", "/metadata/labels/tier"}}}
	if res.Action != nelm.ActionSkip || res.Revision != 1 || !slices.EqualFunc(res.Drifted, want, func(a, b nelm.ObjectDrift) bool {
		return a.Object == b.Object && slices.Equal(a.Paths, b.Paths)
	}) {
		t.Fatalf("reconcile = %+v, want a skip of revision 1 reporting %+v", res, want)
	}
	// warn leaves the change alone.
	if cm, _ := getConfigMap(t, ns, "warned-cm"); cm.Data["value"] != "by-hand" || cm.Labels["tier"] != "edited" {
		t.Fatalf("ConfigMap after warn = %v %v, want the hand edit kept", cm.Data, cm.Labels)
	}
}

func TestDriftEnabledCorrectsAllButIgnoredFields(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{MonitorInterval: 100 * time.Millisecond, MonitorJitter: -1})
	pkg := newPackage(t, ns, "fixed")
	pkg.DriftDetection = &v1alpha1.DriftDetection{Mode: v1alpha1.DriftDetectionEnabled, Ignore: []v1alpha1.DriftIgnoreRule{
		{Paths: []string{"/data/note"}, Target: &v1alpha1.DriftIgnoreTarget{Kind: "ConfigMap", Name: "fixed-cm"}},
		// Another object's rule does not apply to this one.
		{Paths: []string{"/data/value"}, Target: &v1alpha1.DriftIgnoreTarget{Kind: "ConfigMap", Name: "other"}},
	}}
	ctx := ctxFor(t)
	ch := chartOf("fixed", "1.0.0", driftChart("fixed"))
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}

	// A reconcile corrects the drift at once, without a new revision.
	editByHand(t, ns, "fixed-cm", map[string]string{"value": "by-hand", "note": "by-hand"})
	res, err := s.Upgrade(ctx, pkg, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != nelm.ActionSkip || res.Revision != 1 || len(res.Drifted) != 1 || !slices.Equal(res.Drifted[0].Paths, []string{"/data/value", "/metadata/labels/tier"}) {
		t.Fatalf("reconcile = %+v, want a skip of revision 1 correcting /data/value and /metadata/labels/tier only", res)
	}
	cm, _ := getConfigMap(t, ns, "fixed-cm")
	if cm.Data["value"] != "one" || cm.Labels["tier"] != "gadget" {
		t.Fatalf("ConfigMap after the correction = %v %v, want value one and tier gadget", cm.Data, cm.Labels)
	}
	if cm.Data["note"] != "by-hand" {
		t.Fatalf("ignored /data/note = %q, want the hand edit kept", cm.Data["note"])
	}
	ev := waitForEventWith(t, pkg, nelm.ReasonDriftCorrected, "ConfigMap "+ns+"/fixed-cm at /data/value, /metadata/labels/tier")
	if strings.Contains(ev.Message, "/data/note") {
		t.Fatalf("DriftCorrected %q names the ignored /data/note", ev.Message)
	}
	if n := len(history(t, ns, "fixed")); n != 1 {
		t.Fatalf("revisions after the correction = %d, want 1", n)
	}

	// The monitor corrects it as well, between reconciles.
	editByHand(t, ns, "fixed-cm", map[string]string{"value": "again"})
	eventually.True(t, 30*time.Second, "the monitor to set value back", func() bool {
		cm, _ := getConfigMap(t, ns, "fixed-cm")
		return cm.Data["value"] == "one"
	})
}

func TestNoDriftNoEvent(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "calm")
	pkg.DriftDetection = &v1alpha1.DriftDetection{Mode: v1alpha1.DriftDetectionWarn}
	ctx := ctxFor(t)
	ch := chartOf("calm", "1.0.0", driftChart("calm"))
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	// Helm's own labels and annotations, and the fields the API server
	// defaults (the Service's clusterIP, protocol, ...) are no drift.
	res, err := s.Upgrade(ctx, pkg, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != nelm.ActionSkip || len(res.Drifted) != 0 {
		t.Fatalf("reconcile without changes = %+v, want a skip and no drift", res)
	}
	waitForEvent(t, pkg, nelm.ReasonUpToDate)
	if evs := driftEvents(t, ns); len(evs) != 0 {
		t.Fatalf("drift Events without drift: %q", evs)
	}
	// The check did run: a change is reported by the same reconcile.
	editByHand(t, ns, "calm-cm", map[string]string{"note": "by-hand"})
	if res, err = s.Upgrade(ctx, pkg, ch, nil); err != nil || len(res.Drifted) != 1 {
		t.Fatalf("reconcile after a change = %+v, %v; want the ConfigMap reported", res, err)
	}
	waitForEventWith(t, pkg, nelm.ReasonDriftDetected, "ConfigMap "+ns+"/calm-cm at /data/note, /metadata/labels/tier")
}

// Drift detection acts as the package's ServiceAccount: an account that
// may not patch the release's objects cannot dry-run an apply of them
// either, and is told so in words naming verb, resource and account.
func TestDriftDetectionActsAsServiceAccount(t *testing.T) {
	ns := env.Namespace(t)
	noPatch := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}}
	nelmtest.ServiceAccount(t, env.Client, ns, "reader", nelmtest.ReleaseStorage, noPatch)
	s := newService(t, nelm.Options{})
	pkg := newPackage(t, ns, "tenant")
	pkg.ServiceAccount = "reader"
	pkg.DriftDetection = &v1alpha1.DriftDetection{Mode: v1alpha1.DriftDetectionWarn}
	ch := chartOf("tenant", "1.0.0", map[string]string{"cm.yaml": configMapIn("", "own")})
	ctx := ctxFor(t)
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatalf("install as the account: %v", err)
	}
	_, err := s.Upgrade(ctx, pkg, ch, nil)
	want := fmt.Sprintf("patch configmaps in namespace %s: forbidden for service account %s/reader", ns, ns)
	var fe *identity.ForbiddenError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "detect drift of release "+ns+"/tenant") {
		t.Fatalf("reconcile with drift detection: %v; want a ForbiddenError of the drift detection saying %q", err, want)
	}
	waitForEventWith(t, pkg, nelm.ReasonForbidden, want)
}
