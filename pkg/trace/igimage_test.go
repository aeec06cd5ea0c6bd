package trace_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/igimage"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// runningImagePackage creates GadgetPackage ns/name of image pkg:tag of
// repository repo, whose manifest is desc, with the status the cluster
// role writes once the image runs.
func runningImagePackage(t *testing.T, ns, name, repo, pkg, tag string, desc ocispec.Descriptor) *v1alpha1.GadgetPackage {
	t.Helper()
	ctx := context.Background()
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.GadgetPackageSpec{Repository: repo, Package: pkg, Version: tag}}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status.Phase, gp.Status.Enabled, gp.Status.Version, gp.Status.Digest = v1alpha1.PhaseRunning, true, tag, desc.Digest.Encoded()
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}
	return gp
}

// TestTraceOfInspektorGadgetImage runs a Trace of a package installed
// from an Inspektor Gadget image: the node, whose store starts empty,
// pulls the image from its registry by the manifest digest the package's
// status records, and the Trace reports the gadget's exec events with
// their param applied in the kernel and their fields typed and enriched,
// as for a chart package.
func TestTraceOfInspektorGadgetImage(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{emptyStore: true})
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	desc := reg.Push(t, "trace_exec", "v1.0.0", packagetest.IGTraceExec(t))
	repo := env.Repository(t, "igimage", v1alpha1.PackageRepositorySpec{URL: reg.URL, Insecure: true})

	gp := runningImagePackage(t, ns, "trace-exec-image", repo, "trace_exec", "v1.0.0", desc)

	bin := marker(t, "gpmigimage")
	user := markerUser(t, bin)
	tr := newTrace(t, ns, "igimage", n.name, gp.Name, func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Parameters = map[string]string{"uid": fmt.Sprint(user.Uid)}
	})
	k := key(tr)
	annotate(t, k, gadgetv1alpha1.OperationStart)
	got := waitTrace(t, k, 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationError != "" {
		t.Fatalf("operationError: %s", got.Status.OperationError)
	}
	runEvery(t, bin)
	runEveryAs(t, bin, user)
	waitTrace(t, k, 30*time.Second, "marker events in status", func(tr *gadgetv1alpha1.Trace) bool {
		return contains(tr.Status.Output, "gpmigimage")
	})
	annotate(t, k, gadgetv1alpha1.OperationStop)
	got = waitTrace(t, k, 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	evs := events(t, got.Status.Output)
	if countComm(evs, "gpmigimage") == 0 {
		t.Fatalf("no marker event in the output: %s", got.Status.Output)
	}
	for _, e := range evs {
		_, enriched := e["container"]
		_, typed := e["timestamp_raw"].(string)
		if e["creds.uid"] != float64(user.Uid) || !enriched || !typed {
			t.Errorf("event %v: want creds.uid %d (the param), a container field and a wall-clock timestamp_raw", e, user.Uid)
		}
	}
	info, ok, err := igimage.ReadInfo(n.store.Dir(desc.Digest.Encoded()))
	if !ok || err != nil || info.Digest != desc.Digest.String() {
		t.Errorf("the node's store: image %+v (%v, %v), want the image of %s", info, ok, err, desc.Digest)
	}
	if _, err := os.Stat(filepath.Join(n.store.Dir(desc.Digest.Encoded()), igimage.ProgramFile)); err != nil {
		t.Error(err)
	}
}
