package nelm_test

import (
	"errors"
	"strings"
	"testing"

	helmchart "helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

func TestUpgradeBadInput(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	ctx := ctxFor(t)

	// A healthy neighbour that must not be affected by any bad input.
	neighbour := newPackage(t, ns, "neighbour")
	good := chartOf("neighbour", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	if _, err := s.Upgrade(ctx, neighbour, good, nil); err != nil {
		t.Fatal(err)
	}

	// The package under test has a GadgetPackage, so its failures are
	// recorded as Events on it.
	bad := newPackage(t, ns, "bad")

	schema := []byte(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"replicas":{"type":"integer"}}}`)
	tests := []struct {
		name    string
		pkg     func() nelm.Package
		chart   func() *helmchart.Chart
		values  map[string]any
		wantIs  error
		wantErr []string
		// wantEvent: a Warning HelmFailed Event on the GadgetPackage
		// holds these.
		wantEvent []string
	}{
		{
			name: "template error",
			chart: func() *helmchart.Chart {
				return chartOf("bad", "1.0.0", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: {{ .Values.missing.deeper }}\n"})
			},
			wantErr:   []string{"templates/cm.yaml:6", "nil pointer"},
			wantEvent: []string{"upgrade release " + ns + "/bad", "render chart bad", "templates/cm.yaml:6", "nil pointer"},
		},
		{
			name: "unparsable template",
			chart: func() *helmchart.Chart {
				return chartOf("bad", "1.0.0", map[string]string{"cm.yaml": "a: {{ if }}\n"})
			},
			wantErr: []string{"templates/cm.yaml:1", "missing value for if"},
		},
		{
			name: "values of the wrong type",
			chart: func() *helmchart.Chart {
				ch := chartOf("bad", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
				ch.Schema = schema
				return ch
			},
			values:  map[string]any{"replicas": "three"},
			wantErr: []string{"replicas", "integer"},
		},
		{
			name: "unknown kind",
			chart: func() *helmchart.Chart {
				return chartOf("bad", "1.0.0", map[string]string{"w.yaml": "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"})
			},
			wantErr:   []string{`kind "Widget"`, "example.com/v1", "install the CRD"},
			wantEvent: []string{"release " + ns + "/bad", `kind "Widget"`, "install the CRD"},
		},
		{
			name:    "values that are not JSON",
			values:  map[string]any{"callback": func() {}},
			wantErr: []string{"encode values", "unsupported type"},
		},
		{
			name:    "namespace does not exist",
			pkg:     func() nelm.Package { return nelm.Package{Namespace: "no-such-namespace", Name: "bad"} },
			wantIs:  nelm.ErrNamespaceNotFound,
			wantErr: []string{`"no-such-namespace" does not exist`},
		},
		{
			name:    "release name Helm rejects",
			pkg:     func() nelm.Package { return nelm.Package{Namespace: ns, Name: "Not_Valid"} },
			wantIs:  nelm.ErrInvalidPackage,
			wantErr: []string{`metadata.name "Not_Valid"`, "release name"},
		},
		{
			name:    "release name too long",
			pkg:     func() nelm.Package { return nelm.Package{Namespace: ns, Name: strings.Repeat("a", 54)} },
			wantIs:  nelm.ErrInvalidPackage,
			wantErr: []string{"at most 53"},
		},
		{
			name:    "empty namespace",
			pkg:     func() nelm.Package { return nelm.Package{Name: "bad"} },
			wantIs:  nelm.ErrInvalidPackage,
			wantErr: []string{"empty namespace"},
		},
		{
			name:    "no chart",
			chart:   func() *helmchart.Chart { return nil },
			wantIs:  nelm.ErrInvalidChart,
			wantErr: []string{"no chart"},
		},
		{
			name: "chart without a version",
			chart: func() *helmchart.Chart {
				return chartOf("bad", "", map[string]string{"cm.yaml": configMaps(1)})
			},
			wantIs:  nelm.ErrInvalidChart,
			wantErr: []string{"version"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkg := bad
			if tt.pkg != nil {
				pkg = tt.pkg()
			}
			ch := chartOf("bad", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
			if tt.chart != nil {
				ch = tt.chart()
			}
			_, err := s.Upgrade(ctx, pkg, ch, tt.values)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if len(tt.wantEvent) > 0 {
				if e := waitForEventWith(t, pkg, nelm.ReasonFailed, tt.wantEvent...); e.Type != corev1.EventTypeWarning {
					t.Errorf("%s Event %q is of type %s, want Warning", nelm.ReasonFailed, e.Message, e.Type)
				}
			}
			if pkg.Namespace == ns {
				if h := history(t, ns, pkg.Name); len(h) != 0 {
					t.Errorf("bad input left %d revisions of %s", len(h), pkg.Name)
				}
			}
			h := history(t, ns, "neighbour")
			if len(h) != 1 || h[0].Info.Status != "deployed" {
				t.Fatalf("neighbour release changed: %d revisions", len(h))
			}
		})
	}
}
