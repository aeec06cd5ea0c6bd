package trace_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/store"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

func fileTrace(output string) traceOpt {
	return func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.OutputMode = gadgetv1alpha1.OutputFile
		tr.Spec.Output = output
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func writeFiles(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// deleteTrace deletes the Trace of k and waits until it is gone.
func deleteTrace(t *testing.T, k client.ObjectKey) {
	t.Helper()
	if err := env.Client.Delete(context.Background(), &gadgetv1alpha1.Trace{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 60*time.Second, fmt.Sprintf("trace %s to be gone", k), func() bool {
		return apierrors.IsNotFound(env.Client.Get(context.Background(), k, &gadgetv1alpha1.Trace{}))
	})
}

// TestFileOutputIsDeletedWithItsTrace: the File output of a Trace (its
// current and rotated files) is removed when the Trace is deleted; a
// file of another Trace and a file that is no Trace's output stay.
func TestFileOutputIsDeletedWithItsTrace(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	dir := filepath.Join(n.dir, "traces", ns)

	tr := newTrace(t, ns, "doomed", n.name, "trace-exec", fileTrace("doomed-out"))
	newTrace(t, ns, "other", n.name, "trace-exec", fileTrace(""))
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
	current := filepath.Join(dir, "doomed-out.jsonl")
	if !exists(current) {
		t.Fatalf("the running Trace's output %s does not exist", current)
	}
	rotated := filepath.Join(dir, "doomed-out.jsonl.1")
	kept := []string{filepath.Join(dir, "other.jsonl"), filepath.Join(dir, "notes.txt")}
	writeFiles(t, append([]string{rotated}, kept...)...)

	deleteTrace(t, key(tr))
	eventually.True(t, 30*time.Second, "the deleted Trace's output files to be removed", func() bool {
		return !exists(current) && !exists(rotated)
	})
	for _, p := range kept {
		if !exists(p) {
			t.Errorf("%s was removed with Trace %s/doomed, whose output it is not", p, ns)
		}
	}
}

// TestFileOutputsOfTracesDeletedWhileTheNodeWasDown: a node that starts
// removes the File outputs of Traces that no longer exist (deleted while
// it was down, their finalizer removed by hand) and of those deleted
// while it was down (finalizer still set); it keeps those of existing
// Traces and files that are no Trace's output.
func TestFileOutputsOfTracesDeletedWhileTheNodeWasDown(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	dataDir := t.TempDir()
	name := uniqueNode(t)
	n := startNode(t, name, nodeOptions{dataDir: dataDir})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	forced := newTrace(t, ns, "forced", name, "trace-exec", fileTrace(""))
	pending := newTrace(t, ns, "pending", name, "trace-exec", fileTrace("pending-out.jsonl"))
	live := newTrace(t, ns, "live", name, "trace-exec", fileTrace("live-out"))
	for _, tr := range []*gadgetv1alpha1.Trace{forced, pending, live} {
		// the node's finalizer is on once it reconciled the Trace
		waitTrace(t, key(tr), 60*time.Second, "the node's finalizer", func(tr *gadgetv1alpha1.Trace) bool {
			return len(tr.Finalizers) > 0
		})
	}
	n.stop(t)

	dir := filepath.Join(dataDir, "traces", ns)
	gone := []string{filepath.Join(dir, "forced.jsonl"), filepath.Join(dir, "forced.jsonl.2"),
		filepath.Join(dir, "pending-out.jsonl"), filepath.Join(dir, "vanished.jsonl")}
	kept := []string{filepath.Join(dir, "live-out.jsonl"), filepath.Join(dir, "live-out.jsonl.1"), filepath.Join(dir, "notes.txt"),
		filepath.Join(dataDir, "traces", "unrelated.jsonl")}
	writeFiles(t, append(append([]string{}, gone...), kept...)...)

	ctx := context.Background()
	for _, tr := range []*gadgetv1alpha1.Trace{forced, pending} {
		if err := env.Client.Delete(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	// forced: its finalizer removed by hand, as for a node that is gone
	var f gadgetv1alpha1.Trace
	if err := env.Client.Get(ctx, key(forced), &f); err != nil {
		t.Fatal(err)
	}
	before := f.DeepCopy()
	f.Finalizers = nil
	if err := env.Client.Patch(ctx, &f, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}

	startNode(t, name, nodeOptions{dataDir: dataDir})
	eventually.True(t, 60*time.Second, "the outputs of the deleted Traces to be removed after start", func() bool {
		for _, p := range gone {
			if exists(p) {
				return false
			}
		}
		return true
	})
	for _, p := range kept {
		if !exists(p) {
			t.Errorf("%s was removed, though no deleted Trace wrote it", p)
		}
	}
}

// TestRunningTraceKeepsItsArchive: the package store's collection keeps
// the archive of a gadget a Trace on the node runs even when no package's
// status names it (an upgrade moved the package on), while it removes the
// archives nothing uses in the same collection.
func TestRunningTraceKeepsItsArchive(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "keeps", n.name, "trace-exec")
	annotate(t, key(tr), gadgetv1alpha1.OperationStart)
	waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))

	old := time.Now().Add(-time.Hour)
	// written long ago: only what uses them may keep them
	for _, c := range []string{"trace-exec", "trace-open"} {
		d := packBundled(t, c).digest
		tree := filepath.Join(n.dir, "packages", "packages", d)
		err := filepath.WalkDir(tree, func(p string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Chtimes(p, old, old)
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(n.dir, "packages", "archives", d+".tgz"), old, old); err != nil {
			t.Fatal(err)
		}
	}
	col, err := store.NewCollector(store.CollectorOptions{Store: n.store, Interval: time.Hour, MinAge: time.Minute,
		Named: func(context.Context) (map[string]bool, error) { return map[string]bool{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	col.Once(context.Background())
	if _, ok := n.store.Archive(packBundled(t, "trace-open").digest); ok {
		t.Fatal("the collection did not remove the archive of trace-open, which nothing uses")
	}
	if _, ok := n.store.Archive(packBundled(t, "trace-exec").digest); !ok {
		t.Fatal("the collection removed the archive of trace-exec, whose gadget a Trace on the node runs")
	}
	annotate(t, key(tr), gadgetv1alpha1.OperationStop)
	waitTrace(t, key(tr), 60*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
}
