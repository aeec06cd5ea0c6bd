package nelm_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	helmchart "helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// newService returns a Service recording Events to the API server; its
// monitors and event broadcaster stop when the test ends.
func newService(t testing.TB, opts nelm.Options) *nelm.Service {
	t.Helper()
	if opts.Recorder == nil {
		opts.Recorder = nelmtest.Recorder(t, env.Config, env.Scheme)
	}
	s, err := nelm.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.StopMonitors)
	return s
}

// newPackage creates a GadgetPackage in ns and describes it.
func newPackage(t testing.TB, ns, name string) nelm.Package {
	t.Helper()
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: "test", Package: name},
	}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatalf("create GadgetPackage %s/%s: %v", ns, name, err)
	}
	return nelm.PackageFor(gp)
}

// chartOf builds a chart in memory; templates map file names below
// templates/ to their text.
func chartOf(name, version string, templates map[string]string) *helmchart.Chart {
	ch := &helmchart.Chart{Metadata: &helmchart.Metadata{APIVersion: "v2", Name: name, Version: version}}
	for file, text := range templates {
		ch.Templates = append(ch.Templates, &helmchart.File{Name: "templates/" + file, Data: []byte(text)})
	}
	return ch
}

// configMaps is a template with n ConfigMaps whose data key "value" is
// .Values.value.
func configMaps(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-%d\ndata:\n  value: {{ .Values.value | default \"none\" | quote }}\n", i)
	}
	return b.String()
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitForEvent waits until an Event with reason on the package's object
// exists and returns its message.
func waitForEvent(t *testing.T, pkg nelm.Package, reason string) string {
	t.Helper()
	return waitForEventWith(t, pkg, reason).Message
}

// waitForEventWith waits until an Event with reason on the package's object
// whose message contains every one of parts exists, and returns it.
func waitForEventWith(t *testing.T, pkg nelm.Package, reason string, parts ...string) corev1.Event {
	t.Helper()
	return env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: pkg.Namespace, Kind: "GadgetPackage", Name: pkg.Name, Reason: reason, Parts: parts})
}

func getConfigMap(t *testing.T, ns, name string) (*corev1.ConfigMap, bool) {
	t.Helper()
	var cm corev1.ConfigMap
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm)
	if client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	return &cm, err == nil
}
