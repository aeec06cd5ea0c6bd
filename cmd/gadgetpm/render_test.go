package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// brokenTemplate fails at line 6 when rendered with the default values.
const brokenTemplate = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: {{ .Values.missing.deeper }}\n"

func TestLintRendersTemplates(t *testing.T) {
	src := t.TempDir()
	broken := packagetest.Write(t, src, packagetest.Source{Name: "broken-template",
		Files: map[string]string{"templates/cm.yaml": brokenTemplate}})
	unparsable := packagetest.Write(t, src, packagetest.Source{Name: "unparsable",
		Files: map[string]string{"templates/extra.yaml": "a: 1\nb: {{ if }}\n"}})
	newer := packagetest.Write(t, src, packagetest.Source{Name: "newer", KubeVersion: ">=1.40.0-0"})

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"template error", []string{"package", "lint", broken},
			[]string{"templates/cm.yaml:6: render with the default values:", "nil pointer evaluating"}},
		{"parse error", []string{"package", "lint", unparsable},
			[]string{"templates/extra.yaml:2: render with the default values:", "missing value for if"}},
		{"kubeVersion the default version does not meet", []string{"package", "lint", newer},
			[]string{"render with the default values:", ">=1.40.0-0", "v1.36.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, tt.args...)
			if !errors.Is(err, errLintFailed) {
				t.Fatalf("err = %v, want a lint failure; output:\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("lint output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// --kube-version renders for another cluster.
	if out, err := run(t, "package", "lint", newer, "--kube-version", "v1.40.1"); err != nil || !strings.Contains(out, "newer 1.0.0: ok") {
		t.Errorf("lint --kube-version v1.40.1: %v\n%s", err, out)
	}
}

func TestPackageRender(t *testing.T) {
	src := t.TempDir()
	tmpl := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n  namespace: {{ .Release.Namespace }}\ndata:\n" +
		"  maxRows: {{ .Values.maxRows | default 0 | quote }}\n  ignoreFailed: {{ .Values.ignoreFailed | quote }}\n" +
		"  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  gadget: {{ .Files.Get \"gadget/gadget.yaml\" | quote }}\n"
	hook := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pre\n  annotations:\n    helm.sh/hook: pre-install\n"
	pkg := packagetest.Write(t, src, packagetest.Source{Name: "shown", KubeVersion: ">=1.30.0-0",
		Files: map[string]string{"templates/cm.yaml": tmpl, "templates/hook.yaml": hook}})
	broken := packagetest.Write(t, src, packagetest.Source{Name: "broken-template",
		Files: map[string]string{"templates/cm.yaml": brokenTemplate}})
	bad := packagetest.Write(t, src, packagetest.Source{Name: "badgadget", Gadget: "name: x\ncolour: blue\n"})
	settings := filepath.Join(src, "settings.yaml")
	if err := os.WriteFile(settings, []byte("maxRows: 5\nignoreFailed: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := filepath.Join(src, "later.yaml")
	if err := os.WriteFile(later, []byte("maxRows: 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		want    []string
		wantNot []string
		wantErr []string
	}{
		{name: "defaults", args: []string{pkg},
			want: []string{"name: shown-cm", "namespace: default", `maxRows: "0"`, `ignoreFailed: "false"`, `kube: "v1.36.3"`, `gadget: ""`,
				"# Source: shown/templates/hook.yaml", "name: pre"},
			wantNot: []string{"execsnoop"}},
		{name: "values files, later wins, --set last", args: []string{pkg, "-f", settings, "-f", later, "--set", "ignoreFailed=false"},
			want: []string{`maxRows: "6"`, `ignoreFailed: "false"`}},
		{name: "--set", args: []string{pkg, "--set", "maxRows=9", "--set", "ignoreFailed=true"},
			want: []string{`maxRows: "9"`, `ignoreFailed: "true"`}},
		{name: "release name, namespace and kube version", args: []string{pkg, "--release-name", "mine", "-n", "gadgets", "--kube-version", "v1.31.2"},
			want: []string{"name: mine-cm", "namespace: gadgets", `kube: "v1.31.2"`}},
		{name: "settings that fail the schema", args: []string{pkg, "--set", "maxRows=0"},
			wantErr: []string{"render chart shown", "maxRows", "minimum"}},
		{name: "unknown setting", args: []string{pkg, "--set", "colour=blue"},
			wantErr: []string{"render chart shown", "colour"}},
		{name: "kubeVersion not met", args: []string{pkg, "--kube-version", "v1.29.0"},
			wantErr: []string{"kubeVersion: >=1.30.0-0", "v1.29.0"}},
		{name: "bad kube version", args: []string{pkg, "--kube-version", "thirty"},
			wantErr: []string{`kube version "thirty"`}},
		{name: "template error", args: []string{broken},
			wantErr: []string{"templates/cm.yaml:6", "nil pointer"}},
		{name: "package with problems", args: []string{bad},
			wantErr: []string{"load package badgadget 1.0.0", "gadget/gadget.yaml:2: field colour is not a known key"}},
		{name: "missing values file", args: []string{pkg, "-f", filepath.Join(src, "nope.yaml")},
			wantErr: []string{"read settings", "nope.yaml"}},
		{name: "bad --set", args: []string{pkg, "--set", "justakey"},
			wantErr: []string{"read settings", "justakey"}},
		{name: "no such package", args: []string{filepath.Join(src, "nope")},
			wantErr: []string{"no such file"}},
		{name: "no argument", args: nil,
			wantErr: []string{"accepts 1 arg"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, append([]string{"package", "render"}, tt.args...)...)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; output:\n%s", out)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}

	// The help documents every flag.
	out, err := run(t, "package", "render", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"DIR|TGZ", "--set", "--values", "-f,", "--kube-version", "--namespace", "--release-name", "--hook-timeout", "values.schema.json", "Exit status"} {
		if !strings.Contains(out, w) {
			t.Errorf("render --help lacks %q:\n%s", w, out)
		}
	}
}
