package fetch_test

import (
	"slices"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// TestInstallIGTestGadgetImages installs the snapshotter, top and params
// test gadgets of Inspektor Gadget's ABI from their images: each loads
// with its data source, and the catalog (a GadgetPackage's
// status.catalog) lists the limits gadget.yaml puts on a param.
func TestInstallIGTestGadgetImages(t *testing.T) {
	ns := env.Namespace(t)
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	repo := createRepo(t, v1alpha1.PackageRepositorySpec{URL: reg.URL, Insecure: true})
	for _, tt := range []struct {
		gadget, source string
		check          func(*testing.T, *v1alpha1.Catalog)
	}{
		{"ig_snap_tasks", "tasks", nil},
		{"ig_top_opens", "opens", nil},
		{"ig_fields_all", "connect", func(t *testing.T, c *v1alpha1.Catalog) {
			i := slices.IndexFunc(c.Params, func(p v1alpha1.CatalogParam) bool { return p.Key == "ipversion" })
			j := slices.IndexFunc(c.Params, func(p v1alpha1.CatalogParam) bool { return p.Key == "pid" })
			if i < 0 || j < 0 || !slices.Equal(c.Params[i].PossibleValues, []string{"0", "4", "6"}) || c.Params[j].TypeHint != "int32" {
				t.Errorf("catalog params %+v: want ipversion's possibleValues 0, 4, 6 and pid's typeHint int32", c.Params)
			}
		}},
	} {
		t.Run(tt.gadget, func(t *testing.T) {
			desc := reg.Push(t, tt.gadget, "v1.0.0", packagetest.IGTestGadget(t, tt.gadget))
			f := newFetcher(t, t.TempDir(), ns)
			gp := imagePackage(repo, tt.gadget, "v1.0.0")
			d, err := f.Download(ctx, gp)
			if err != nil {
				t.Fatal(err)
			}
			if d.Digest != desc.Digest.Encoded() {
				t.Errorf("digest %s, want the manifest's %s", d.Digest, desc.Digest.Encoded())
			}
			_, p := installAndLoad(t, f, d, gp)
			if p.Catalog == nil || !slices.ContainsFunc(p.Catalog.DataSources, func(ds v1alpha1.CatalogDataSource) bool { return ds.Name == tt.source }) {
				t.Fatalf("catalog %+v: want the data source %s", p.Catalog, tt.source)
			}
			if tt.check != nil {
				tt.check(t, p.Catalog)
			}
		})
	}
}
