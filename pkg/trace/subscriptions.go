package trace

import (
	"context"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// FieldOwnerPrefix + node name is the server-side apply field owner of a
// node's entries in GadgetPackage status.subscriptions.
const FieldOwnerPrefix = "gadgetpm-node/"

// subscriptionsChanged marks pkg's subscriptions for the sync loop, which
// applies this node's entries (the Traces of this node running its gadget)
// to the package's status. It never blocks on the API server.
func (c *Controller) subscriptionsChanged(pkg types.NamespacedName) {
	c.mu.Lock()
	c.subDirty[pkg] = true
	c.mu.Unlock()
	select {
	case c.subWake <- struct{}{}:
	default:
	}
}

// syncSubscriptions applies the marked packages' subscriptions until ctx
// ends; a failed apply is retried after a second. Owned by the Runnable.
func (c *Controller) syncSubscriptions(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.subWake:
		case <-retry.C:
		}
		if !c.flushSubscriptions() {
			retry.Reset(time.Second)
		}
	}
}

// flushSubscriptions applies every marked package once; false when one
// failed (it stays marked).
func (c *Controller) flushSubscriptions() bool {
	c.mu.Lock()
	dirty := c.subDirty
	c.subDirty = map[types.NamespacedName]bool{}
	want := map[types.NamespacedName][]string{}
	for key, s := range c.active {
		if dirty[s.pkg] {
			want[s.pkg] = append(want[s.pkg], key.String())
		}
	}
	c.mu.Unlock()
	ok := true
	for pkg := range dirty {
		traces := want[pkg]
		sort.Strings(traces)
		if err := c.applySubscriptions(pkg, traces); err != nil {
			c.log.Error(err, "apply subscriptions to package status; retrying", "package", pkg.String())
			c.mu.Lock()
			c.subDirty[pkg] = true
			c.mu.Unlock()
			ok = false
		}
	}
	return ok
}

// applySubscriptions server-side applies exactly this node's entries;
// other nodes' entries (other field owners) stay.
func (c *Controller) applySubscriptions(pkg types.NamespacedName, traces []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.opts.Client.Status().Apply(ctx, SubscriptionsApply(pkg, c.opts.NodeName, traces),
		client.FieldOwner(FieldOwnerPrefix+c.opts.NodeName), client.ForceOwnership)
	return client.IgnoreNotFound(err)
}

// SubscriptionsApply is what node applies to the status of the
// GadgetPackage pkg, with field owner FieldOwnerPrefix+node: its
// subscriptions are then exactly traces ("<namespace>/<name>"); none
// removes its entries.
func SubscriptionsApply(pkg types.NamespacedName, node string, traces []string) runtime.ApplyConfiguration {
	subs := make([]any, 0, len(traces))
	for _, t := range traces {
		subs = append(subs, map[string]any{"node": node, "trace": t})
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("GadgetPackage")
	u.SetNamespace(pkg.Namespace)
	u.SetName(pkg.Name)
	if len(subs) > 0 {
		u.Object["status"] = map[string]any{"subscriptions": subs}
	}
	return client.ApplyConfigurationFromUnstructured(u)
}
