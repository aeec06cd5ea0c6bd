package trace_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// openEvery opens path every 10ms from the test's own process until the
// test ends.
func openEvery(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	doEvery(t, 10*time.Millisecond, func() {
		if f, err := os.Open(path); err == nil {
			f.Close()
		}
	})
}

// TestTraceOfIGSnapshotAndTopImages runs Traces of the snapshotter and of
// the top gadget of Inspektor Gadget's ABI, each installed as a package
// from its image in a registry (the node pulls them): collect lists the
// test's own process once, enriched; generate reports the test's opens
// in rows with counts.
func TestTraceOfIGSnapshotAndTopImages(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{emptyStore: true})
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	repo := env.Repository(t, "igimages", v1alpha1.PackageRepositorySpec{URL: reg.URL, Insecure: true})
	for name, gadget := range map[string]string{"snap-tasks": "ig_snap_tasks", "top-opens": "ig_top_opens"} {
		runningImagePackage(t, ns, name, repo, gadget, "v1.0.0", reg.Push(t, gadget, "v1.0.0", packagetest.IGTestGadget(t, gadget)))
	}

	t.Run("snapshot", func(t *testing.T) {
		t.Parallel()
		tr := newTrace(t, ns, "snap", n.name, "snap-tasks")
		annotate(t, key(tr), gadgetv1alpha1.OperationCollect)
		got := waitTrace(t, key(tr), 60*time.Second, "Completed", stateIs(gadgetv1alpha1.TraceCompleted))
		if got.Status.OperationError != "" {
			t.Fatalf("operationError: %s", got.Status.OperationError)
		}
		var self []map[string]any
		for _, e := range events(t, got.Status.Output) {
			if int(e["pid"].(float64)) == os.Getpid() {
				self = append(self, e)
			}
		}
		if len(self) != 1 {
			t.Fatalf("own process %d listed %d times, want once: %v", os.Getpid(), len(self), self)
		}
		if c, ok := self[0]["container"]; !ok || c != "" || self[0]["kernel"] != float64(0) || self[0]["comm"] == "" {
			t.Errorf("own process %v: want it enriched (container \"\": the host), kernel 0 and its comm", self[0])
		}
	})
	t.Run("top", func(t *testing.T) {
		t.Parallel()
		openEvery(t, filepath.Join(t.TempDir(), "top-marker"))
		tr := newTrace(t, ns, "top", n.name, "top-opens", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.Duration = &metav1.Duration{Duration: 2 * time.Second}
			tr.Spec.Parameters = map[string]string{"map-fetch-interval": "200ms", "targ_pid": strconv.Itoa(os.Getpid())}
		})
		annotate(t, key(tr), gadgetv1alpha1.OperationGenerate)
		got := waitTrace(t, key(tr), 60*time.Second, "Completed", stateIs(gadgetv1alpha1.TraceCompleted))
		if got.Status.OperationError != "" {
			t.Fatalf("operationError: %s", got.Status.OperationError)
		}
		rows := events(t, got.Status.Output)
		var total float64
		for _, e := range rows {
			if int(e["pid"].(float64)) != os.Getpid() || e["comm"] == "" {
				t.Errorf("row %v: want the test's process (targ_pid %d) with its comm", e, os.Getpid())
			}
			total += e["opens"].(float64)
		}
		if len(rows) == 0 || total == 0 {
			t.Errorf("%d rows, %v opens: want the test's opens counted: %s", len(rows), total, got.Status.Output)
		}
	})
}
