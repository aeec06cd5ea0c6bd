// Package noderoletest helps tests check that a node role runs: it asks
// the node for an operation and waits for the node's answer. Test code
// only.
package noderoletest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

// RequireAnswer creates Trace ns/exec on node asking to start a gadget no
// package provides, and fails the test unless, within 30s, the node
// answered: an operationError naming the gadget, and the operation
// annotation removed. No eBPF is needed.
func RequireAnswer(t testing.TB, c client.Client, ns, node string) {
	t.Helper()
	ctx := context.Background()
	tr := &gadgetv1alpha1.Trace{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exec",
			Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: "start"}},
		Spec: gadgetv1alpha1.TraceSpec{Node: node, Gadget: "no-such-package", OutputMode: "Status"},
	}
	if err := c.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	msg := eventually.Value(t, 30*time.Second, "node "+node+" to answer Trace "+ns+"/exec", func() (string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(tr), tr); err != nil {
			return "", err
		}
		if tr.Status.OperationError == "" || tr.Annotations[gadgetv1alpha1.OperationAnnotation] != "" {
			return "", errors.New("the operation is not answered yet")
		}
		return tr.Status.OperationError, nil
	})
	if !strings.Contains(msg, "no-such-package") || strings.Contains(msg, "serves node") {
		t.Errorf("operationError %q: want node %s's own verdict on spec.gadget", msg, node)
	}
}
