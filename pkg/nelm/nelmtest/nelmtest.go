package nelmtest

import (
	"strings"
	"testing"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmrelease "helm.sh/helm/v3/pkg/release"
	helmreleaseutil "helm.sh/helm/v3/pkg/releaseutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// HelmConfig returns a Helm action configuration for releases in ns with
// Secret storage, as `helm --namespace ns` has.
func HelmConfig(t testing.TB, cfg *rest.Config, ns string) *helmaction.Configuration {
	t.Helper()
	g, err := nelm.NewRESTClientGetter(cfg, ns, 50, 100)
	if err != nil {
		t.Fatal(err)
	}
	c := new(helmaction.Configuration)
	if err := c.Init(g, ns, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	return c
}

// History returns the revisions of release name in ns, oldest first; none
// when there is no such release.
func History(t testing.TB, cfg *rest.Config, ns, name string) []*helmrelease.Release {
	t.Helper()
	h, err := HelmConfig(t, cfg, ns).Releases.History(name)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatalf("history of release %s/%s: %v", ns, name, err)
	}
	helmreleaseutil.SortByRevision(h)
	return h
}

// NeverReady is a Deployment named never-ready that never becomes ready
// without a kubelet, so an install or upgrade that adds it fails its
// readiness wait (the release's revision is left failed).
const NeverReady = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: never-ready
spec:
  replicas: 1
  selector:
    matchLabels: {app: never-ready}
  template:
    metadata:
      labels: {app: never-ready}
    spec:
      containers:
      - name: c
        image: example.invalid/never:1
`

// Recorder records Events to the API server behind cfg, as the operator
// does; its broadcaster stops when the test ends.
func Recorder(t testing.TB, cfg *rest.Config, scheme *runtime.Scheme) record.EventRecorder {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	t.Cleanup(b.Shutdown)
	return b.NewRecorder(scheme, corev1.EventSource{Component: "gadgetpm"})
}
