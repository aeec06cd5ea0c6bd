package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// applySubscriptions writes a node's subscriptions as the node's Trace
// controller does.
func applySubscriptions(gp *v1alpha1.GadgetPackage, node string, traces ...string) error {
	return env.Client.Status().Apply(context.Background(), trace.SubscriptionsApply(client.ObjectKeyFromObject(gp), node, traces),
		client.FieldOwner(trace.FieldOwnerPrefix+node), client.ForceOwnership)
}

// TestWaitUnsubscribed: removal waits until the nodes dropped their
// subscriptions, or until the timeout, after which it names the Traces
// that still held the package; nodes' entries do not overwrite each other.
func TestWaitUnsubscribed(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "held"},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: "r", Package: "trace-exec"},
	}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	for node, traces := range map[string][]string{"node-a": {ns + "/a1", ns + "/a2"}, "node-b": {ns + "/b1"}} {
		if err := applySubscriptions(gp, node, traces...); err != nil {
			t.Fatal(err)
		}
	}
	var cur v1alpha1.GadgetPackage
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(gp), &cur); err != nil {
		t.Fatal(err)
	}
	if len(cur.Status.Subscriptions) != 3 {
		t.Fatalf("two nodes' entries: %+v", cur.Status.Subscriptions)
	}

	rec := record.NewFakeRecorder(10)
	w := coordinator.NewUnsubscribeWaiter(env.Client, time.Second, rec)
	start := time.Now()
	if err := w.WaitUnsubscribed(ctx, gp); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("returned after %s, before the timeout, while Traces hold the package", time.Since(start))
	}
	select {
	case ev := <-rec.Events:
		for _, want := range []string{"TracesStillSubscribed", ns + "/a1 on node-a", ns + "/b1 on node-b"} {
			if !strings.Contains(ev, want) {
				t.Errorf("event %q does not name %q", ev, want)
			}
		}
	default:
		t.Error("no Event names the Traces that held the package")
	}

	// the nodes let go while it waits: it returns without the timeout
	w = coordinator.NewUnsubscribeWaiter(env.Client, time.Minute, rec)
	released := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		err := applySubscriptions(gp, "node-a")
		if err == nil {
			err = applySubscriptions(gp, "node-b")
		}
		released <- err
	}()
	start = time.Now()
	if err := w.WaitUnsubscribed(ctx, gp); err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("returned after %s", d)
	}
}
