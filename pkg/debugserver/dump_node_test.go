package debugserver

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// TestWithNodeNamesTheNode: a dump read through `kubectl exec` must say
// which node's replica wrote it; everything else passes through.
func TestWithNodeNamesTheNode(t *testing.T) {
	src := &fakeSource{dump: Dump{Packages: []PackageDump{{Key: "gadget.hook-demo", Phase: "Running"}}}}
	d := WithNode(src, "worker-1").Dump()
	out, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["node"] != "worker-1" {
		t.Errorf("dump YAML node = %v, want worker-1:\n%s", m["node"], out)
	}
	if len(d.Packages) != 1 || d.Packages[0].Key != "gadget.hook-demo" {
		t.Errorf("packages changed by WithNode: %+v", d.Packages)
	}
	if _, ok := WithNode(src, "worker-1").Package("gadget.hook-demo"); !ok {
		t.Error("Package lookups do not pass through WithNode")
	}
}
