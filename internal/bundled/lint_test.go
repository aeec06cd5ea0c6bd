package bundled_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	helmchartutil "helm.sh/helm/v3/pkg/chartutil"
	helmlint "helm.sh/helm/v3/pkg/lint"
	helmlintsupport "helm.sh/helm/v3/pkg/lint/support"

	"github.com/gadgetpm/gadgetpm/packages/loader"
)

// TestBundledPackagesLint holds every bundled package to what a package
// author runs before publishing: gadgetpm's own checks and helm lint's.
func TestBundledPackagesLint(t *testing.T) {
	root := filepath.Join(env.RepoRoot, "charts", "packages")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := helmchartutil.ParseKubeVersion("v1.36.3")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n++
		dir := filepath.Join(root, e.Name())
		t.Run(e.Name(), func(t *testing.T) {
			if _, problems := loader.Check(context.Background(), dir, loader.Options{}); len(problems) > 0 {
				for _, p := range problems {
					t.Errorf("gadgetpm package lint: %s", p)
				}
			}
			for _, m := range helmlint.AllWithKubeVersion(dir, nil, "default", kv).Messages {
				if m.Severity >= helmlintsupport.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
	if n == 0 {
		t.Fatalf("no packages under %s", root)
	}
}

// TestHookDemoPackedByHelm: `helm package` drops file modes; the hooks must
// still be found (by their "#!" line) and the sourced library must not be
// taken for one.
func TestHookDemoPackedByHelm(t *testing.T) {
	ch, err := helmloader.Load(demoDir(t))
	if err != nil {
		t.Fatal(err)
	}
	tgz, err := helmchartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, problems := loader.Check(context.Background(), tgz, loader.Options{})
	for _, pr := range problems {
		t.Errorf("lint %s: %s", filepath.Base(tgz), pr)
	}
	if p == nil {
		t.FailNow()
	}
	var names []string
	for _, h := range p.Hooks {
		names = append(names, h.Name)
	}
	want := []string{"10-startup.sh", "20-tick.sh", "30-configmaps.sh", "40-before-helm.sh", "50-after-helm.sh", "60-after-delete.sh"}
	if !slices.Equal(names, want) {
		t.Fatalf("hooks in the helm-packaged archive = %v, want %v", names, want)
	}
}
