package nelm_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	helmchart "helm.sh/helm/v3/pkg/chart"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// withCRDs adds files under crds/ to ch.
func withCRDs(ch *helmchart.Chart, files map[string]string) *helmchart.Chart {
	for name, text := range files {
		ch.Files = append(ch.Files, &helmchart.File{Name: "crds/" + name, Data: []byte(text)})
	}
	return ch
}

func getCRD(t *testing.T, name string) (*apiextensionsv1.CustomResourceDefinition, bool) {
	t.Helper()
	var crd apiextensionsv1.CustomResourceDefinition
	err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &crd)
	if client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	return &crd, err == nil
}

func deleteCRDAtEnd(t *testing.T, name string) {
	t.Cleanup(func() {
		crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}}
		_ = env.Client.Delete(context.Background(), crd)
	})
}

// The chart's crds/ (and its subchart's) are created as Helm creates them
// on install, served by the time InstallCRDs returns, never updated, and
// left behind when the release goes.
func TestInstallCRDsCreatesWaitsNeverUpdates(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	ctx := ctxFor(t)
	pkg := newPackage(t, ns, "crds")
	const group = "crds.nelm.gadgetpm.test"
	deleteCRDAtEnd(t, "gizmos."+group)
	deleteCRDAtEnd(t, "doohickeys."+group)

	sub := withCRDs(chartOf("sub", "1.0.0", nil), map[string]string{"doohickey.yaml": packagetest.CRD(group, "Doohickey", "doohickeys")})
	ch := withCRDs(chartOf("crds", "1.0.0", map[string]string{
		// The chart's templates may use the kind its crds/ define.
		"gizmo.yaml": "apiVersion: " + group + "/v1\nkind: Gizmo\nmetadata:\n  name: {{ .Release.Name }}-g\n",
	}), map[string]string{"gizmo.yaml": packagetest.CRD(group, "Gizmo", "gizmos", "gz")})
	ch.AddDependency(sub)

	if err := s.InstallCRDs(ctx, pkg, ch); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gizmos." + group, "doohickeys." + group} {
		crd, ok := getCRD(t, name)
		if !ok {
			t.Fatalf("CRD %s was not created", name)
		}
		established := false
		for _, c := range crd.Status.Conditions {
			established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
		}
		if !established {
			t.Errorf("CRD %s is not Established when InstallCRDs returned: %+v", name, crd.Status.Conditions)
		}
	}
	// Served at once: an object of the new kind is accepted.
	g := &unstructured.Unstructured{}
	g.SetAPIVersion(group + "/v1")
	g.SetKind("Gizmo")
	g.SetNamespace(ns)
	g.SetName("right-away")
	if err := env.Client.Create(ctx, g); err != nil {
		t.Fatalf("create a Gizmo right after InstallCRDs: %v", err)
	}
	waitForEventWith(t, pkg, nelm.ReasonCRDCreated, "gizmos."+group, "crds/gizmo.yaml")
	waitForEventWith(t, pkg, nelm.ReasonCRDCreated, "doohickeys."+group, "charts/sub/crds/doohickey.yaml")

	// A newer chart changes its CRD: the one in the cluster stays as it is.
	changed := withCRDs(chartOf("crds", "1.1.0", nil), map[string]string{"gizmo.yaml": packagetest.CRD(group, "Gizmo", "gizmos", "gz", "gzmo")})
	if err := s.InstallCRDs(ctx, pkg, changed); err != nil {
		t.Fatal(err)
	}
	if crd, _ := getCRD(t, "gizmos."+group); strings.Join(crd.Spec.Names.ShortNames, ",") != "gz" {
		t.Errorf("CRD updated: short names %v, want [gz]", crd.Spec.Names.ShortNames)
	}

	// Helm's own install finds the CRDs there and renders the template.
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, pkg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gizmos." + group, "doohickeys." + group} {
		if _, ok := getCRD(t, name); !ok {
			t.Errorf("CRD %s was deleted with the release", name)
		}
	}

	// A chart without crds/ costs nothing.
	if err := s.InstallCRDs(ctx, pkg, chartOf("crds", "1.0.0", nil)); err != nil {
		t.Fatal(err)
	}
}

func TestInstallCRDsBadInput(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	ctx := ctxFor(t)
	pkg := newPackage(t, ns, "badcrds")
	const group = "bad.nelm.gadgetpm.test"
	deleteCRDAtEnd(t, "gadgets."+group)

	tests := []struct {
		name    string
		files   map[string]string
		invalid bool // ErrInvalidChart: retrying cannot help
		want    []string
	}{
		{"not YAML", map[string]string{"a.yaml": "kind: [CustomResourceDefinition"}, true, []string{"crds/a.yaml document 1", "not YAML"}},
		{"not a CRD", map[string]string{"a.yaml": packagetest.CRD(group, "Gadget", "gadgets") + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"},
			true, []string{"crds/a.yaml document 2", `apiVersion "v1" kind "ConfigMap"`, "expected an apiextensions.k8s.io/v1 CustomResourceDefinition"}},
		{"no name", map[string]string{"a.yaml": "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec: {}\n"}, true, []string{"crds/a.yaml document 1", "metadata.name"}},
		{"refused by the API server", map[string]string{"a.yaml": strings.Replace(packagetest.CRD(group, "Gadget", "gadgets"), "name: gadgets."+group, "name: wrong."+group, 1)},
			true, []string{"CustomResourceDefinition wrong." + group, "crds/a.yaml", "Invalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.InstallCRDs(ctx, pkg, withCRDs(chartOf("badcrds", "1.0.0", nil), tt.files))
			if err == nil {
				t.Fatal("InstallCRDs accepted the chart")
			}
			if errors.Is(err, nelm.ErrInvalidChart) != tt.invalid {
				t.Errorf("errors.Is(%q, ErrInvalidChart) = %v", err, !tt.invalid)
			}
			for _, w := range append([]string{"install CRDs of " + ns + "/badcrds"}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			waitForEventWith(t, pkg, nelm.ReasonCRDFailed, tt.want...)
		})
	}
	// Nothing of a chart whose crds/ do not read is created.
	if _, ok := getCRD(t, "gadgets."+group); ok {
		t.Error("a CRD of a chart with a bad crds/ document was created")
	}
}
