package trace

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
)

// PrivilegedTracesLabel, set to "true" on a Namespace by the cluster
// admin, lets the Traces in that namespace see every process of their
// node: other namespaces' pods and host processes. Without it a Trace sees
// the containers of its own namespace's pods only (docs/traces.md,
// "Namespace confinement").
const PrivilegedTracesLabel = "gadgetpm.io/privileged-traces"

// WarningNoContainerInNamespace is the operationWarning of a confined
// Trace without spec.filter when no container of its namespace runs on the
// node as it starts.
const WarningNoContainerInNamespace = "no container of the Trace's namespace runs on this node: the Trace sees only its namespace's containers (node-wide tracing needs the namespace label " + PrivilegedTracesLabel + "=true)"

// warningKernelNone is added to a no-container warning when the gadget
// filters by mount namespace in the kernel: the map starts empty and is
// filled as the namespace's containers start (syncMntNs).
const warningKernelNone = "; this gadget filters by mount namespace in the kernel: it drops every event until a container of the namespace starts on the node"

// nsMeta is a Namespace as metadata only: its labels are all the node
// reads, and a node caches no Namespace spec or status.
func nsMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return m
}

// privileged reports whether Traces in namespace ns may trace node-wide.
// It reads the API server, not the cache: a label just added or removed
// counts for the run that starts now.
func (c *Controller) privileged(ctx context.Context, ns string) (bool, error) {
	m := nsMeta()
	if err := c.opts.APIReader.Get(ctx, types.NamespacedName{Name: ns}, m); err != nil {
		return false, fmt.Errorf("read the labels of namespace %s (its label %s=true allows node-wide tracing): %w", ns, PrivilegedTracesLabel, err)
	}
	return isPrivileged(m.GetLabels()), nil
}

func isPrivileged(labels map[string]string) bool { return labels[PrivilegedTracesLabel] == "true" }

// confine returns the container filter a run of tr applies: spec.filter
// as written for a privileged Trace (nil: every event, host processes
// included); for a confined one spec.filter restricted to the Trace's own
// namespace, which drops host processes too (they belong to no pod). A
// confined Trace naming another namespace in spec.filter, or setting the
// kernel's mount-namespace filter itself, is refused.
func confine(tr *gadgetv1alpha1.Trace, privileged bool) (*gadgetv1alpha1.ContainerFilter, error) {
	if privileged {
		if emptyFilter(tr.Spec.Filter) {
			return nil, nil
		}
		return tr.Spec.Filter.DeepCopy(), nil
	}
	f := &gadgetv1alpha1.ContainerFilter{}
	if tr.Spec.Filter != nil {
		f = tr.Spec.Filter.DeepCopy()
	}
	if f.Namespace != "" && f.Namespace != tr.Namespace {
		return nil, fmt.Errorf("spec.filter.namespace %q: a Trace in namespace %s sees only the pods of its own namespace; set spec.filter.namespace to %q or leave it empty, or ask a cluster admin to label namespace %s with %s=true to allow tracing other namespaces and host processes",
			f.Namespace, tr.Namespace, tr.Namespace, tr.Namespace, PrivilegedTracesLabel)
	}
	if _, ok := tr.Spec.Parameters[ebpfstage.MntNsParam]; ok {
		return nil, fmt.Errorf("spec.parameters.%s: a Trace in namespace %s, which lacks the label %s=true, cannot choose mount namespaces; the node sets them from the namespace's containers (use spec.filter to select among them)",
			ebpfstage.MntNsParam, tr.Namespace, PrivilegedTracesLabel)
	}
	f.Namespace = tr.Namespace
	return f, nil
}

// checkConfinement stops the running Trace tr when it was started
// privileged and its namespace lost the label: its run would otherwise go
// on seeing other namespaces and the host. A label added takes effect at
// the next run.
func (c *Controller) checkConfinement(ctx context.Context, tr *gadgetv1alpha1.Trace) error {
	s := c.activeSub(types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name})
	if s == nil || s.confined {
		return nil
	}
	priv, err := c.privileged(ctx, tr.Namespace)
	if err != nil || priv {
		return err
	}
	msg := fmt.Sprintf("namespace %s no longer has the label %s=true, so its Traces may not trace beyond it: the run was stopped; start the Trace again to trace the namespace's own pods", tr.Namespace, PrivilegedTracesLabel)
	c.log.Info("stopping a trace whose namespace lost the privileged-traces label", "trace", s.key.String(), "namespace", tr.Namespace, "label", PrivilegedTracesLabel)
	s.requestStop(reasonConfined, msg)
	<-s.finished
	return nil
}

// tracesOfNamespace maps a Namespace to this node's Traces in it.
func (c *Controller) tracesOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list gadgetv1alpha1.TraceList
	if err := c.opts.Client.List(ctx, &list, client.InNamespace(o.GetName()), client.MatchingFields{NodeIndex: c.opts.NodeName}); err != nil {
		c.log.Error(err, "list traces of namespace", "namespace", o.GetName())
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, tr := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}})
	}
	return out
}

// privilegeChanged passes the Namespace updates that add or remove the
// label: only those change what a Trace may see.
func privilegeChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return isPrivileged(e.ObjectOld.GetLabels()) != isPrivileged(e.ObjectNew.GetLabels())
		},
	}
}

// AllowNodeWide labels namespace ns with PrivilegedTracesLabel=true, as a
// cluster admin does with kubectl label: its Traces then see every process
// of their node. gadgetpm dev does it for its own namespace; c needs the
// right to patch Namespaces.
func AllowNodeWide(ctx context.Context, c client.Client, ns string) error {
	patch := []byte(`{"metadata":{"labels":{"` + PrivilegedTracesLabel + `":"true"}}}`)
	if err := c.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("label namespace %s %s=true: %w", ns, PrivilegedTracesLabel, err)
	}
	return nil
}
