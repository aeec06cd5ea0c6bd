package ebpfstage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

var bundled = []string{"trace-exec", "trace-open", "trace-tcpconnect", "snapshot-process", "top-file", "trace-oomkill"}

// TestBundledPackages checks what a package author and the package loader
// rely on: each bundled package's gadget reads, and gadget.yaml describes
// every field and param. internal/bundled lints the charts with Helm; this
// test stays free of Helm so that its binary is small enough to boot in the
// kernel matrix (hack/vmtest.sh).
func TestBundledPackages(t *testing.T) {
	for _, pkg := range bundled {
		t.Run(pkg, func(t *testing.T) {
			dir := filepath.Join(repoRoot, "charts/packages", pkg)
			g, err := gadget.ReadGadget(dir)
			if err != nil {
				t.Fatal(err)
			}
			cat, err := Catalog(g.Object, g.Metadata)
			if err != nil {
				t.Fatal(err)
			}
			for _, ds := range cat.DataSources {
				for _, f := range ds.Fields {
					if f.Description == "" {
						t.Errorf("field %s.%s has no description in gadget.yaml", ds.Name, f.Name)
					}
				}
			}
			for _, p := range cat.Params {
				if p.Description == "" {
					t.Errorf("param %s has no description in gadget.yaml", p.Key)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "values.yaml")); err != nil {
				t.Error(err)
			}
		})
	}
}
