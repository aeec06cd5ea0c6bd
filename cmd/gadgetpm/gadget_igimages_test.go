package main

import (
	"context"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// TestGadgetRunIGImages runs the test gadgets of Inspektor Gadget's ABI
// beyond the tracer, published as images in its layout, from a registry:
// the snapshotter prints one snapshot and ends, the top gadget prints rows
// with counts, and a param of the gadget with limits (gadget.yaml's
// possibleValues) is refused outside them before anything runs.
func TestGadgetRunIGImages(t *testing.T) {
	needRootForGadget(t)
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	src := func(name string) string {
		reg.Push(t, name, "v1.0.0", packagetest.IGTestGadget(t, name))
		return "oci://" + reg.Ref(name, "v1.0.0")
	}
	t.Run("snapshotter", func(t *testing.T) { checkIGSnapshotRun(t, src("ig_snap_tasks"), "--insecure") })
	t.Run("top", func(t *testing.T) { checkIGTopRun(t, src("ig_top_opens"), "--insecure") })
	t.Run("param outside possibleValues", func(t *testing.T) {
		_, errOut, err := gadgetCLI(context.Background(), "gadget", "run", src("ig_fields_all"), "--insecure", "--param", "ipversion=5", "--timeout", "1m")
		if want := `param ipversion: "5" is not one of the allowed values 0, 4, 6`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q\n%s", err, want, errOut)
		}
	})
}
