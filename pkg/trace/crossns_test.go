package trace_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// TestNoCrossNamespaceRefs: with --no-cross-namespace-refs a Trace whose
// spec.gadget names a GadgetPackage of another namespace — as
// "<namespace>/<name>", or as a bare name found only there — is refused:
// status.operationError and a Warning Event naming spec.gadget and the
// flag, one error log line, nothing started. The controller goes on: a
// Trace using a package of its own namespace, by name or by
// spec.package, starts.
func TestNoCrossNamespaceRefs(t *testing.T) {
	requireRoot(t)
	tenantA, tenantB := env.Namespace(t), env.Namespace(t)
	runningPackage(t, tenantA, "exec-a", "trace-exec")
	runningPackage(t, tenantB, "exec-b", "trace-exec")
	var logs testlog.Lines
	n := startNode(t, uniqueNode(t), nodeOptions{noCrossNamespaceRefs: true, logger: logs.Logger(0)})

	for _, tc := range []struct{ name, gadget string }{
		{"qualified", tenantA + "/exec-a"},
		{"bare", "exec-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTrace(t, tenantB, "cross-"+tc.name, n.name, tc.gadget)
			annotate(t, key(tr), gadgetv1alpha1.OperationStart)
			want := []string{"spec.gadget " + tc.gadget, tenantA, "--no-cross-namespace-refs"}
			got := waitTrace(t, key(tr), 60*time.Second, "start refused", func(tr *gadgetv1alpha1.Trace) bool {
				return operationDone(tr) && tr.Status.OperationError != ""
			})
			for _, w := range want {
				if !strings.Contains(got.Status.OperationError, w) {
					t.Errorf("operationError %q does not say %q", got.Status.OperationError, w)
				}
			}
			if got.Status.State == gadgetv1alpha1.TraceStarted {
				t.Errorf("the refused Trace is %s", got.Status.State)
			}
			env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: tenantB, Kind: "Trace", Name: tr.Name,
				Type: corev1.EventTypeWarning, Reason: "OperationFailed", Parts: want})
			if c := logs.Count("refused a reference to a package of another namespace", tenantB+"/"+tr.Name); c != 1 {
				t.Errorf("%d log lines for the refusal, want 1:\n%s", c, strings.Join(logs.Get(), "\n"))
			}
		})
	}

	// By name, and by spec.package: "trace-exec" is the package of both
	// tenants' GadgetPackages, but only tenant B's counts.
	for _, gadget := range []string{"exec-b", "trace-exec"} {
		own := newTrace(t, tenantB, "own-"+gadget, n.name, gadget)
		annotate(t, key(own), gadgetv1alpha1.OperationStart)
		got := waitTrace(t, key(own), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
		if got.Status.OperationError != "" {
			t.Errorf("spec.gadget %s: operationError %q for a package of the Trace's own namespace", gadget, got.Status.OperationError)
		}
		annotate(t, key(own), gadgetv1alpha1.OperationStop)
		waitTrace(t, key(own), 60*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
	}
}
