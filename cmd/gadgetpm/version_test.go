package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCommand(&out, &errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String() + errOut.String(), err
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"text", []string{"version"}, []string{"gadgetpm:", "commit:", "go:", runtime.Version(), "helm sdk:", "kubernetes client:"}, ""},
		{"json", []string{"version", "-o", "json"}, []string{`"go": "` + runtime.Version()}, ""},
		{"bad output", []string{"version", "-o", "xml"}, nil, `unknown output format "xml" for --output`},
		{"extra args", []string{"version", "now"}, nil, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tt.name == "json" {
				var m map[string]string
				if err := json.Unmarshal([]byte(out), &m); err != nil {
					t.Fatalf("not JSON: %v", err)
				}
			}
		})
	}
}

func TestHelpListsEveryCommand(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range newRootCommand(&bytes.Buffer{}, &bytes.Buffer{}).Commands() {
		// Hidden commands (the hook sandbox server) are plumbing between
		// gadgetpm's own processes.
		if !c.Hidden && !strings.Contains(out, c.Name()) {
			t.Errorf("--help does not list %s", c.Name())
		}
		if c.Short == "" || (c.Long == "" && c.HasSubCommands() == false && c.Name() != "help" && c.Name() != "completion") {
			t.Errorf("command %s lacks Short or Long help", c.Name())
		}
	}
}
