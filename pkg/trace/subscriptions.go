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

// syncState coalesces subscription writes of one package: while one
// caller applies, later changes only mark it dirty and that caller
// applies again.
type syncState struct {
	running, dirty bool
}

// subscriptionsChanged applies this node's subscriptions of pkg to the
// package's status: the Traces of this node running its gadget. The
// caller that finds no apply in progress performs it (and any that
// changes meanwhile ask for); others return at once.
func (c *Controller) subscriptionsChanged(pkg types.NamespacedName) {
	c.mu.Lock()
	st := c.subsync[pkg]
	if st == nil {
		st = &syncState{}
		c.subsync[pkg] = st
	}
	st.dirty = true
	if st.running {
		c.mu.Unlock()
		return
	}
	st.running = true
	c.mu.Unlock()
	for {
		c.mu.Lock()
		if !st.dirty {
			st.running = false
			delete(c.subsync, pkg)
			c.mu.Unlock()
			return
		}
		st.dirty = false
		var traces []string
		for key, s := range c.active {
			if s.pkg == pkg {
				traces = append(traces, key.String())
			}
		}
		c.mu.Unlock()
		sort.Strings(traces)
		if err := c.applySubscriptions(pkg, traces); err != nil {
			c.log.Error(err, "apply subscriptions to package status", "package", pkg.String())
		}
	}
}

// applySubscriptions server-side applies exactly this node's entries;
// other nodes' entries (other field owners) stay.
func (c *Controller) applySubscriptions(pkg types.NamespacedName, traces []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
