package trace_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// packIG packs a package whose gadget is bpf/testdata/ig_trace_exec.bpf.o,
// written against Inspektor Gadget's ABI, with its gadget.yaml in that
// project's layout, and puts it into n's store.
func packIG(t *testing.T, n *node) packedPkg {
	t.Helper()
	src := filepath.Join(t.TempDir(), "ig-trace-exec")
	if err := os.MkdirAll(filepath.Join(src, "gadget"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"Chart.yaml": []byte("apiVersion: v2\nname: ig-trace-exec\nversion: 1.0.0\n")}
	for from, to := range map[string]string{"ig_trace_exec.bpf.o": "gadget/program.bpf.o", "ig_trace_exec.gadget.yaml": "gadget/gadget.yaml"} {
		b, err := os.ReadFile(filepath.Join(env.RepoRoot, "bpf", "testdata", from))
		if err != nil {
			t.Fatal(err)
		}
		files[to] = b
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dest := filepath.Join(t.TempDir(), "ig-trace-exec.tgz")
	if err := chartrepo.Pack(src, "ig-trace-exec", dest); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	p := packedPkg{digest: hex.EncodeToString(sum[:]), data: data}
	if err := n.store.PutArchive(p.digest, p.data); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTraceOfInspektorGadgetABIGadget runs a Trace of a gadget built with
// Inspektor Gadget's ABI: spec.parameters reaches its param under the key
// its gadget.yaml gives it (uid for targ_uid), filtering in the kernel, and
// the output's fields are typed and enriched.
func TestTraceOfInspektorGadgetABIGadget(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ctx := context.Background()
	ns := env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	p := packIG(t, n)
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ig-trace-exec"},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: "bundled", Package: "ig-trace-exec", Version: "*"},
	}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status.Phase, gp.Status.Enabled, gp.Status.Version, gp.Status.Digest = v1alpha1.PhaseRunning, true, "1.0.0", p.digest
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}

	bin := marker(t, "gpmigtrace")
	user := markerUser(t, bin)
	tr := newTrace(t, ns, "igtrace", n.name, "ig-trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Parameters = map[string]string{"uid": fmt.Sprint(user.Uid)}
	})
	k := key(tr)
	annotate(t, k, gadgetv1alpha1.OperationStart)
	got := waitTrace(t, k, 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationError != "" {
		t.Fatalf("operationError: %s", got.Status.OperationError)
	}
	before := time.Now()
	runEvery(t, bin)         // as root: filtered out by the param
	runEveryAs(t, bin, user) // as the marker user: reported
	waitTrace(t, k, 30*time.Second, "marker events in status", func(tr *gadgetv1alpha1.Trace) bool {
		return contains(tr.Status.Output, "gpmigtrace")
	})
	annotate(t, k, gadgetv1alpha1.OperationStop)
	got = waitTrace(t, k, 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	evs := events(t, got.Status.Output)
	if countComm(evs, "gpmigtrace") == 0 {
		t.Fatalf("no marker event in the output: %s", got.Status.Output)
	}
	for _, e := range evs {
		if e["creds.uid"] != float64(user.Uid) {
			t.Errorf("event by uid %v passed spec.parameters uid=%d: %v", e["creds.uid"], user.Uid, e)
		}
		ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e["timestamp_raw"]))
		if err != nil || ts.Before(before.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
			t.Errorf("timestamp_raw %v: want the wall-clock time of the exec (%v)", e["timestamp_raw"], err)
		}
		if _, ok := e["container"]; !ok {
			t.Errorf("not enriched (no container field): %v", e)
		}
		if _, ok := e["error_raw"]; ok {
			t.Errorf("error_raw is hidden by gadget.yaml but in the output: %v", e)
		}
	}
}
