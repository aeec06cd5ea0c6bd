package nelm_test

import (
	"errors"
	"strings"
	"testing"

	helmchart "helm.sh/helm/v3/pkg/chart"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

func TestRender(t *testing.T) {
	withGadget := func() *helmchart.Chart {
		ch := chartOf("r", "1.0.0", map[string]string{
			"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: r\ndata:\n  gadget: {{ .Files.Get \"gadget/gadget.yaml\" | quote }}\n  readme: {{ .Files.Get \"README.md\" | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n",
		})
		ch.Files = []*helmchart.File{{Name: "gadget/gadget.yaml", Data: []byte("secret")}, {Name: "README.md", Data: []byte("hello")}}
		return ch
	}
	tests := []struct {
		name     string
		chart    func() *helmchart.Chart
		values   map[string]any
		opts     nelm.RenderOptions
		want     []string
		wantNot  []string
		wantErr  []string
		wantIsEr error
	}{
		{
			name:    "gadget files hidden from templates",
			chart:   withGadget,
			opts:    nelm.RenderOptions{KubeVersion: "v1.36.3"},
			want:    []string{`readme: "hello"`, `gadget: ""`, `kube: "v1.36.3"`},
			wantNot: []string{"secret"},
		},
		{
			name: "kubeVersion satisfied",
			chart: func() *helmchart.Chart {
				ch := chartOf("r", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
				ch.Metadata.KubeVersion = ">=1.30.0-0"
				return ch
			},
			opts: nelm.RenderOptions{KubeVersion: "v1.36.3", Namespace: "ns1", ReleaseName: "rel"},
			want: []string{"name: rel-0"},
		},
		{
			name: "kubeVersion refused",
			chart: func() *helmchart.Chart {
				ch := chartOf("r", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
				ch.Metadata.KubeVersion = ">=1.30.0-0"
				return ch
			},
			opts:    nelm.RenderOptions{KubeVersion: "v1.29.0"},
			wantErr: []string{"render chart r", "kubeVersion: >=1.30.0-0", "v1.29.0"},
		},
		{
			name:    "bad kube version option",
			chart:   withGadget,
			opts:    nelm.RenderOptions{KubeVersion: "one-point-thirty"},
			wantErr: []string{`kube version "one-point-thirty"`},
		},
		{
			name: "template error names file and line",
			chart: func() *helmchart.Chart {
				return chartOf("r", "1.0.0", map[string]string{"x.yaml": "a: 1\nb: {{ fail \"no way\" }}\n"})
			},
			wantErr: []string{"templates/x.yaml:2", "no way"},
		},
		{
			name:     "nil chart",
			chart:    func() *helmchart.Chart { return nil },
			wantIsEr: nelm.ErrInvalidChart,
		},
		{
			name:    "bad release name",
			chart:   withGadget,
			opts:    nelm.RenderOptions{ReleaseName: "UPPER"},
			wantErr: []string{`release name "UPPER"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := nelm.Render(tt.chart(), tt.values, tt.opts)
			if len(tt.wantErr) > 0 || tt.wantIsEr != nil {
				if err == nil {
					t.Fatalf("no error; manifest:\n%s", r.Manifest)
				}
				if tt.wantIsEr != nil && !errors.Is(err, tt.wantIsEr) {
					t.Errorf("error %v is not %v", err, tt.wantIsEr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Manifest, w) {
					t.Errorf("manifest lacks %q:\n%s", w, r.Manifest)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(r.Manifest, w) {
					t.Errorf("manifest has %q:\n%s", w, r.Manifest)
				}
			}
		})
	}
}

func TestRenderChecksum(t *testing.T) {
	ch := chartOf("c", "1.0.0", map[string]string{"cm.yaml": configMaps(2)})
	sum := func(ch *helmchart.Chart, values map[string]any) string {
		t.Helper()
		r, err := nelm.Render(ch, values, nelm.RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Checksum
	}
	base := sum(ch, map[string]any{"value": 1, "other": map[string]any{"a": 1, "b": 2}})
	if len(base) > 63 {
		t.Fatalf("checksum %q does not fit a label value", base)
	}
	if again := sum(ch, map[string]any{"other": map[string]any{"b": 2.0, "a": 1}, "value": 1.0}); again != base {
		t.Errorf("same values in another order or number type: checksum %s, want %s", again, base)
	}
	if other := sum(ch, map[string]any{"value": 2, "other": map[string]any{"a": 1, "b": 2}}); other == base {
		t.Error("different values, same checksum")
	}
	ch2 := chartOf("c", "1.0.1", map[string]string{"cm.yaml": configMaps(2)})
	if other := sum(ch2, map[string]any{"value": 1, "other": map[string]any{"a": 1, "b": 2}}); other == base {
		t.Error("different chart version, same checksum")
	}
}

func TestRenderSubchartLeavesCallerChartAlone(t *testing.T) {
	parent := chartOf("parent", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	parent.Metadata.Dependencies = []*helmchart.Dependency{{Name: "sub", Version: "0.1.0", Condition: "sub.enabled"}}
	sub := chartOf("sub", "0.1.0", map[string]string{"sub.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-sub\n"})
	parent.AddDependency(sub)

	tests := []struct {
		enabled bool
		wantSub bool
	}{{enabled: true, wantSub: true}, {enabled: false, wantSub: false}}
	for _, tt := range tests {
		r, err := nelm.Render(parent, map[string]any{"sub": map[string]any{"enabled": tt.enabled}}, nelm.RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(r.Manifest, "from-sub"); got != tt.wantSub {
			t.Errorf("sub.enabled=%v: subchart rendered %v, want %v", tt.enabled, got, tt.wantSub)
		}
		// Helm drops disabled subcharts from the chart it renders; the
		// caller's chart must keep them for the next render.
		if n := len(parent.Dependencies()); n != 1 {
			t.Fatalf("caller's chart has %d subcharts after rendering, want 1", n)
		}
	}
}

func TestTemplateLocation(t *testing.T) {
	sub := chartOf("sub", "0.1.0", map[string]string{"deep.yaml": "a: 1\nb: 2\nc: {{ fail \"sub fails\" }}\n"})
	parent := chartOf("parent", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	parent.AddDependency(sub)
	tests := []struct {
		name     string
		chart    *helmchart.Chart
		opts     nelm.RenderOptions
		wantFile string
		wantLine int
	}{
		{"executing", chartOf("r", "1.0.0", map[string]string{"x.yaml": "a: 1\nb: {{ fail \"no way\" }}\n"}), nelm.RenderOptions{}, "templates/x.yaml", 2},
		{"parsing", chartOf("r", "1.0.0", map[string]string{"y.yaml": "a: 1\nb: 2\nc: {{ if }}\n"}), nelm.RenderOptions{}, "templates/y.yaml", 3},
		{"subchart", parent, nelm.RenderOptions{}, "charts/sub/templates/deep.yaml", 3},
		{"not a template error", chartOf("r", "1.0.0", map[string]string{"cm.yaml": configMaps(1)}), nelm.RenderOptions{KubeVersion: "thirty"}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := nelm.Render(tt.chart, nil, tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			file, line, ok := nelm.TemplateLocation(err)
			if file != tt.wantFile || line != tt.wantLine || ok != (tt.wantFile != "") {
				t.Errorf("TemplateLocation(%q) = %q, %d, %v; want %q, %d", err, file, line, ok, tt.wantFile, tt.wantLine)
			}
		})
	}
	if _, _, ok := nelm.TemplateLocation(nil); ok {
		t.Error("TemplateLocation(nil) found a location")
	}
}
