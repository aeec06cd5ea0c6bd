package ebpfstage

import (
	"slices"
	"testing"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// TestIGCatalogListsParamRules: the catalog (`gadgetpm gadget catalog`, a
// GadgetPackage's status.catalog) tells a user which values a param takes
// where gadget.yaml restricts them, so that nobody learns them by trial.
func TestIGCatalogListsParamRules(t *testing.T) {
	g := fieldsGadget(t)
	cat, err := Catalog(g.Object, g.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key      string
		possible []string
		hint     string
	}{
		{"ipversion", []string{"0", "4", "6"}, ""},
		{"pid", nil, "int32"},
	} {
		i := slices.IndexFunc(cat.Params, func(p gadget.ParamDesc) bool { return p.Key == tt.key })
		if i < 0 {
			t.Errorf("param %s missing from the catalog: %+v", tt.key, cat.Params)
			continue
		}
		if p := cat.Params[i]; !slices.Equal(p.PossibleValues, tt.possible) || p.TypeHint != tt.hint {
			t.Errorf("param %s: possibleValues %q typeHint %q, want %q and %q", tt.key, p.PossibleValues, p.TypeHint, tt.possible, tt.hint)
		}
	}
}
