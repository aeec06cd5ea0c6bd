package gadgetpackage_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/igimage"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// TestInspektorGadgetImagesInstallAsPackages installs Inspektor Gadget
// images through a PackageRepository of their registry and GadgetPackages
// naming them: a single manifest and a two-architecture index end Running
// with the manifest's digest and the tag as version, and their gadget's
// catalog; a wasm image and one without its program end Ready=False with
// a Warning Event that names the image and what was expected, while the
// good ones keep converging.
func TestInspektorGadgetImagesInstallAsPackages(t *testing.T) {
	startWith(t, setup{})
	ns := env.Namespace(t)
	good := packagetest.IGTraceExec(t)
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	single := reg.Push(t, "trace_exec", "v1.0.0", good)
	other := "arm64"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	index, perArch := reg.PushIndex(t, "multi_arch", "v0.40.0", map[string]packagetest.IGImage{runtime.GOARCH: good,
		other: packagetest.IGTraceExec(t, packagetest.IGLayer{MediaType: igimage.MediaTypeBTFGen, Data: []byte("other")})})
	reg.Push(t, "wasm_gadget", "v1", packagetest.IGTraceExec(t, packagetest.IGLayer{MediaType: igimage.MediaTypeWasm, Data: []byte("\x00asm")}))
	reg.Push(t, "no_program", "v1", packagetest.IGImage{Config: good.Config})
	repoName := env.Repository(t, "images", v1alpha1.PackageRepositorySpec{URL: reg.URL, Interval: metav1.Duration{Duration: time.Second}, Insecure: true})

	// Object names are DNS labels; packages are the image repositories'
	// names, underscores and all.
	createImagePackage(t, ns, "trace-exec", "trace_exec", repoName, "v1.0.0")
	createImagePackage(t, ns, "multi-arch", "multi_arch", repoName, index.Digest.String())
	createImagePackage(t, ns, "wasm-gadget", "wasm_gadget", repoName, "v1")
	createImagePackage(t, ns, "no-program", "no_program", repoName, "v1")

	for name, bad := range map[string][]string{
		"wasm-gadget": {"package wasm_gadget", reg.Ref("wasm_gadget", "v1"), "wasm gadgets are not supported"},
		"no-program":  {"package no_program", reg.Ref("no_program", "v1"), "no layer of media type " + igimage.MediaTypeProgram},
	} {
		waitFor(t, ns, name, "Ready=False with reason LoadFailed", func(gp *v1alpha1.GadgetPackage) bool {
			c := condition(gp, v1alpha1.ConditionReady)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonLoadFailed && containsAll(c.Message, bad)
		})
		waitWarning(t, ns, name, v1alpha1.ReasonLoadFailed, bad)
	}
	for name, want := range map[string]struct{ digest, version string }{
		"trace-exec": {single.Digest.Encoded(), "v1.0.0"},
		// pinned by the index's digest: the manifest of this architecture
		"multi-arch": {perArch[runtime.GOARCH].Digest.Encoded(), "0.0.0+sha256." + index.Digest.Encoded()},
	} {
		gp := waitFor(t, ns, name, "Running and Ready", func(gp *v1alpha1.GadgetPackage) bool {
			return gp.Status.Phase == v1alpha1.PhaseRunning && isTrue(gp, v1alpha1.ConditionReady)
		})
		if gp.Status.Digest != want.digest || gp.Status.Version != want.version {
			t.Errorf("%s: digest %s, version %s; want the manifest's digest %s and version %s", name, gp.Status.Digest, gp.Status.Version, want.digest, want.version)
		}
		if gp.Status.Catalog == nil || len(gp.Status.Catalog.DataSources) == 0 || gp.Status.Catalog.DataSources[0].Name != "exec" {
			t.Errorf("%s: catalog %+v, want the gadget's data source exec", name, gp.Status.Catalog)
		}
		if len(gp.Status.Hooks) != 0 {
			t.Errorf("%s: hooks %v, want none", name, gp.Status.Hooks)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func createImagePackage(t *testing.T, ns, name, pkg, repository, version string) {
	t.Helper()
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.GadgetPackageSpec{Repository: repository, Package: pkg, Version: version}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
}
