package process_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// A node role that may not load eBPF (a pod without CAP_BPF or
// CAP_SYS_ADMIN: here root with every capability dropped, as a container
// runtime starts such a container) says so on the Trace, in its status
// and a Warning Event, and stays up: its probes, dump and other work go
// on, and the node role next to it, which may, runs the same gadget.
func TestNodeRoleWithoutEBPFPrivileges(t *testing.T) {
	testroot.Require(t, "dropping capabilities")
	ctx := context.Background()
	bin := buildGadgetpm(t)
	// a wrapper that runs gadgetpm as root without any capability
	unprivileged := filepath.Join(t.TempDir(), "gadgetpm-nocaps")
	if err := os.WriteFile(unprivileged, []byte("#!/bin/sh\nexec setpriv --bounding-set -all --inh-caps -all --ambient-caps -all -- "+bin+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	kubeconfig := env.WriteKubeconfig(t)
	ns := env.Namespace(t)
	weak, strong := ns+"-node-weak", ns+"-node-strong"
	// the Traces trace host processes
	if err := trace.AllowNodeWide(ctx, env.Client, ns); err != nil {
		t.Fatal(err)
	}
	createNodes(t, weak, strong)
	gp := traceExecPackage(t, ns)

	common := append([]string{"--namespaces", ns, "--log-format", "json"}, env.ShardArgs()...)
	startOperator(t, bin, kubeconfig, "cluster", append([]string{"--role", "cluster", "--leader-election-namespace", ns}, common...)...)
	weakNode := startOperator(t, unprivileged, kubeconfig, weak, append([]string{"--role", "node", "--node-name", weak}, common...)...)
	strongNode := startOperator(t, bin, kubeconfig, strong, append([]string{"--role", "node", "--node-name", strong}, common...)...)
	eventually.NoError(t, 120*time.Second, "trace-exec Running", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(gp), gp); err != nil {
			return err
		}
		if gp.Status.Phase != gadgetpmv1alpha1.PhaseRunning {
			return fmt.Errorf("phase %q", gp.Status.Phase)
		}
		return nil
	})
	for name, node := range map[string]string{"on-weak": weak, "on-strong": strong} {
		if err := env.Client.Create(ctx, &gadgetv1alpha1.Trace{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: "start"}},
			Spec: gadgetv1alpha1.TraceSpec{Node: node, Gadget: "trace-exec", OutputMode: "Status"},
		}); err != nil {
			t.Fatal(err)
		}
	}

	// the refusal is on the Trace, with what the kernel said
	tr := eventually.Value(t, 60*time.Second, "the Trace on the node without privileges to fail", func() (*gadgetv1alpha1.Trace, error) {
		tr := &gadgetv1alpha1.Trace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "on-weak"}, tr); err != nil {
			return nil, err
		}
		if tr.Status.OperationError == "" {
			return nil, fmt.Errorf("state %q, no operationError yet", tr.Status.State)
		}
		return tr, nil
	})
	if tr.Status.State == gadgetv1alpha1.TraceStarted || !strings.Contains(tr.Status.OperationError, "operation not permitted") ||
		!strings.Contains(tr.Status.OperationError, "CAP_BPF") {
		t.Errorf("Trace on %s: state %q, operationError %q; want it not Started, the kernel's refusal and the privileges it needs named", weak, tr.Status.State, tr.Status.OperationError)
	}
	eventually.NoError(t, 30*time.Second, "a Warning Event on the Trace", func() error {
		var events corev1.EventList
		if err := env.Client.List(ctx, &events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "Trace" && e.InvolvedObject.Name == "on-weak" && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Message, "operation not permitted") {
				return nil
			}
		}
		return errors.New("none yet")
	})
	// the same gadget runs on the node that may
	eventually.NoError(t, 60*time.Second, "the Trace on the node with privileges Started", func() error {
		tr := &gadgetv1alpha1.Trace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "on-strong"}, tr); err != nil {
			return err
		}
		if tr.Status.State != gadgetv1alpha1.TraceStarted || tr.Status.OperationError != "" {
			return fmt.Errorf("state %q, operationError %q", tr.Status.State, tr.Status.OperationError)
		}
		return nil
	})
	// the node without privileges is still up: it answers its dump and
	// logged the failure
	select {
	case err := <-weakNode.exited:
		t.Fatalf("the node role without privileges exited: %v", err)
	default:
	}
	if _, err := tracesInDump(bin, weakNode); err != nil {
		t.Errorf("the node role without privileges does not answer its dump: %v", err)
	}
	if !weakNode.logged(`"level":"error"`) || !weakNode.logged("operation not permitted") {
		t.Error("the node role without privileges did not log the refusal at error level")
	}
	weakNode.terminate(t)
	strongNode.terminate(t)
}
