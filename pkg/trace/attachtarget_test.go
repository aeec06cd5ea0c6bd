package trace_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// TestMissingAttachTarget: a package whose gadget attaches to a kernel
// function this kernel does not have (fentry on gadgetpm_no_such_function)
// fails to start with an operationError naming the function and the
// kernel, and a Trace of another gadget on the same node starts and sees
// events all the same.
func TestMissingAttachTarget(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ctx := context.Background()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})

	// trace-open's chart with the test object in place of its gadget
	dir := t.TempDir()
	src := filepath.Join(env.RepoRoot, "charts", "packages", "trace-open")
	for _, f := range []string{"Chart.yaml", "values.yaml", "templates/configmap.yaml"} {
		copyTo(t, filepath.Join(src, f), filepath.Join(dir, "missing-target", f))
	}
	copyTo(t, filepath.Join(env.RepoRoot, "bpf", "testdata", "missing_fentry.bpf.o"), filepath.Join(dir, "missing-target", "gadget", "program.bpf.o"))
	if err := os.WriteFile(filepath.Join(dir, "missing-target", "gadget", "gadget.yaml"), []byte("name: missing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(dir, "missing-target.tgz")
	if err := chartrepo.Pack(filepath.Join(dir, "missing-target"), "trace-open", tgz); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	if err := n.store.PutArchive(digest, data); err != nil {
		t.Fatal(err)
	}
	gp := &v1alpha1.GadgetPackage{}
	gp.Namespace, gp.Name = ns, "missing-target"
	gp.Spec = v1alpha1.GadgetPackageSpec{Repository: "bundled", Package: "missing-target", Version: "*"}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status.Phase, gp.Status.Enabled, gp.Status.Version, gp.Status.Digest = v1alpha1.PhaseRunning, true, "1.0.0", digest
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}
	runningPackage(t, ns, "trace-exec", "trace-exec")

	bad := newTrace(t, ns, "missing", n.name, "missing-target")
	good := newTrace(t, ns, "exec", n.name, "trace-exec")
	annotate(t, key(bad), gadgetv1alpha1.OperationStart)
	annotate(t, key(good), gadgetv1alpha1.OperationStart)

	got := waitTrace(t, key(bad), 60*time.Second, "start handled", func(tr *gadgetv1alpha1.Trace) bool {
		return operationDone(tr) && tr.Status.OperationError != ""
	})
	t.Logf("operationError: %s", got.Status.OperationError)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	for _, want := range []string{"program on_missing (section fentry/gadgetpm_no_such_function)", "kernel " + release + " has no function gadgetpm_no_such_function"} {
		if !strings.Contains(got.Status.OperationError, want) {
			t.Errorf("operationError %q does not contain %q", got.Status.OperationError, want)
		}
	}
	if got.Status.State == gadgetv1alpha1.TraceStarted {
		t.Errorf("state Started although the gadget could not load")
	}

	waitTrace(t, key(good), 60*time.Second, "the other Trace Started", stateIs(gadgetv1alpha1.TraceStarted))
	bin := marker(t, "gpmmissing")
	runEvery(t, bin)
	waitTrace(t, key(good), 30*time.Second, "events of the other Trace", func(tr *gadgetv1alpha1.Trace) bool {
		return tr.Status.EventCount > 0 && strings.Contains(tr.Status.Output, "gpmmissing")
	})
	annotate(t, key(good), gadgetv1alpha1.OperationStop)
	waitTrace(t, key(good), 30*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
}

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
