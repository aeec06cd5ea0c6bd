package trace_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// packIG packs a package whose gadget is bpf/testdata/ig_trace_exec.bpf.o,
// written against Inspektor Gadget's ABI, with its gadget.yaml in that
// project's layout, and puts it into n's store.
func packIG(t *testing.T, n *node) packedPkg {
	t.Helper()
	return packIGGadget(t, n, "ig-trace-exec", "ig_trace_exec")
}

// packIGGadget packs package name from bpf/testdata/<base>.bpf.o and
// <base>.gadget.yaml and puts it into n's store.
func packIGGadget(t *testing.T, n *node, name, base string) packedPkg {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Join(src, "gadget"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"Chart.yaml": []byte("apiVersion: v2\nname: " + name + "\nversion: 1.0.0\n")}
	for from, to := range map[string]string{base + ".bpf.o": "gadget/program.bpf.o", base + ".gadget.yaml": "gadget/gadget.yaml"} {
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
	dest := filepath.Join(t.TempDir(), name+".tgz")
	if err := chartrepo.Pack(src, name, dest); err != nil {
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

// runningIGPackage puts the ig-trace-exec package into n's store and
// creates its GadgetPackage in ns, Running, as the cluster role would.
func runningIGPackage(t *testing.T, ns string, n *node) {
	t.Helper()
	runningIGGadget(t, ns, "ig-trace-exec", packIG(t, n))
}

// runningIGGadget creates GadgetPackage ns/name of the packed package p,
// Running, as the cluster role would.
func runningIGGadget(t *testing.T, ns, name string, p packedPkg) {
	t.Helper()
	ctx := context.Background()
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: "bundled", Package: name, Version: "*"},
	}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status.Phase, gp.Status.Enabled, gp.Status.Version, gp.Status.Digest = v1alpha1.PhaseRunning, true, "1.0.0", p.digest
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}
}

// TestTraceOfInspektorGadgetABIGadget runs a Trace of a gadget built with
// Inspektor Gadget's ABI: spec.parameters reaches its param under the key
// its gadget.yaml gives it (uid for targ_uid), filtering in the kernel, and
// the output's fields are typed and enriched.
func TestTraceOfInspektorGadgetABIGadget(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningIGPackage(t, ns, n)

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

// TestInspektorGadgetABIMntNsFilterFromSpecFilter: a Trace whose
// spec.filter selects a container fills the gadget's mount-namespace
// filter map, so the kernel drops every other namespace's execs: its run
// delivers no more records than the Trace's output takes, all of them the
// container's. An unfiltered Trace, in a run of its own, gets the execs
// of both.
func TestInspektorGadgetABIMntNsFilterFromSpecFilter(t *testing.T) {
	ns, n, fc := igContainerNode(t, "gpmiginside")
	runEvery(t, marker(t, "gpmigoutside"))
	fakePod(t, ns, "web-0", n.name, fc)

	// The unfiltered Trace sees both, and, once the container's execs
	// carry the pod's name, shows that the node knows the pod.
	all := newTrace(t, ns, "all", n.name, "ig-trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.OutputMode = gadgetv1alpha1.OutputFile
	})
	annotate(t, key(all), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(all), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	allFile := filepath.Join(n.dir, "traces", ns, "all.jsonl")
	outside := func() (int, error) {
		data, err := os.ReadFile(allFile)
		return strings.Count(string(data), `"gpmigoutside"`), err
	}
	eventually.NoError(t, 30*time.Second, "execs of both the container (enriched with its pod) and the host in "+allFile, func() error {
		data, err := os.ReadFile(allFile)
		if err == nil && (!strings.Contains(string(data), `"pod":"web-0"`) || !strings.Contains(string(data), `"gpmigoutside"`)) {
			err = fmt.Errorf("%d bytes, not both", len(data))
		}
		return err
	})

	web := newTrace(t, ns, "web", n.name, "ig-trace-exec", selectPod(ns, "web-0"))
	annotate(t, key(web), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(web), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationError != "" || got.Status.OperationWarning != "" {
		t.Fatalf("operationError %q, operationWarning %q", got.Status.OperationError, got.Status.OperationWarning)
	}
	before, err := outside()
	if err != nil {
		t.Fatal(err)
	}
	waitTrace(t, key(web), 30*time.Second, "the container's execs", func(tr *gadgetv1alpha1.Trace) bool {
		return strings.Contains(tr.Status.Output, "gpmiginside")
	})
	// the host went on exec'ing while the filtered run was live
	eventually.True(t, 30*time.Second, "more host execs in "+allFile, func() bool {
		after, err := outside()
		return err == nil && after > before
	})
	deliversOnlyTo(t, n, key(web))

	annotate(t, key(all), gadgetv1alpha1.OperationStop)
	if evs := stopOnlyContainer(t, key(web), fc); countComm(evs, "gpmiginside") == 0 {
		t.Fatalf("no exec of the container in %d events", len(evs))
	}
	waitTrace(t, key(all), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
}

// TestInspektorGadgetABIMntNsFilterContainerLater: when spec.filter
// selects no container at start, the kernel filter stays off (an empty map
// would drop everything), so a matching container that comes later is
// still reported, through the node's container filter.
func TestInspektorGadgetABIMntNsFilterContainerLater(t *testing.T) {
	ns, n, fc := igContainerNode(t, "gpmiglater")

	web := newTrace(t, ns, "web", n.name, "ig-trace-exec", selectPod(ns, "web-0"))
	annotate(t, key(web), gadgetv1alpha1.OperationStart)
	got := waitTrace(t, key(web), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	if got.Status.OperationWarning != trace.WarningNoContainer {
		t.Fatalf("filter matching nothing yet: operationWarning %q, operationError %q", got.Status.OperationWarning, got.Status.OperationError)
	}
	fakePod(t, ns, "web-0", n.name, fc)
	waitTrace(t, key(web), 30*time.Second, "the later container's execs", func(tr *gadgetv1alpha1.Trace) bool {
		return strings.Contains(tr.Status.Output, "gpmiglater")
	})
	stopOnlyContainer(t, key(web), fc)
}

// deliversOnlyTo waits until the run serving Trace k has delivered some
// records and no more than k's output took: the kernel's filter dropped
// the rest.
func deliversOnlyTo(t *testing.T, n *node, k types.NamespacedName) {
	t.Helper()
	eventually.NoError(t, 10*time.Second, "the filtered run to deliver only what "+k.String()+" takes", func() error {
		for _, r := range n.ctrl.Runs() {
			if slices.Contains(r.Traces, k.String()) {
				// Events first: the run counts a record before the
				// Trace's output takes it.
				ev := r.Outputs[k.String()].Events
				if ev == 0 || r.Records != ev {
					return fmt.Errorf("run %s (Traces %v) delivered %d records, %s took %d", r.ID, r.Traces, r.Records, k, ev)
				}
				return nil
			}
		}
		return fmt.Errorf("no run serves %s", k)
	})
}

// igContainerNode starts a node running the ig-trace-exec package in a new
// namespace, and a fake container running a marker named inside.
func igContainerNode(t *testing.T, inside string) (string, *node, *fakeContainer) {
	t.Helper()
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningIGPackage(t, ns, n)
	return ns, n, startFakeContainer(t, marker(t, inside))
}

// selectPod filters a Trace to pod ns/pod.
func selectPod(ns, pod string) traceOpt {
	return func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Filter = &gadgetv1alpha1.ContainerFilter{Namespace: ns, Podname: pod}
	}
}

// stopOnlyContainer stops Trace k and checks that every event of its
// output is fc's; it returns them.
func stopOnlyContainer(t *testing.T, k types.NamespacedName, fc *fakeContainer) []map[string]any {
	t.Helper()
	annotate(t, k, gadgetv1alpha1.OperationStop)
	got := waitTrace(t, k, 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	evs := events(t, got.Status.Output)
	for _, e := range evs {
		if e["container"] != fc.id {
			t.Fatalf("an exec from outside the container reached the output: %v", e)
		}
	}
	return evs
}
