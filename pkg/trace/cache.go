package trace

import (
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// CacheOptions are the controller manager's cache options for a process
// that runs the node role alone (every node pays for what it caches): no
// object keeps its managedFields, and GadgetPackages keep only what a node
// reads (not settings, hooks, catalog, conditions or subscriptions). Nodes
// are cached as metadata only whatever the options (the controller reads
// them as PartialObjectMetadata: it only checks that spec.node exists), and
// so are Namespaces (watched for the privileged-traces label).
//
// Traces are cached cluster-wide: a node answers a Trace annotated for a
// node that does not exist, and the Trace CRD has no selectable spec.node.
// A process that also runs the cluster role must not use these options: it
// reads what they drop.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.GadgetPackage{}: {Transform: slimPackage},
		},
	}
}

// lastApplied is kubectl's copy of the object it applied: a node never
// reads it.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func stripMeta(o client.Object) {
	o.SetManagedFields(nil)
	if a := o.GetAnnotations(); a[lastApplied] != "" {
		delete(a, lastApplied)
		o.SetAnnotations(a)
	}
}

// slimPackage keeps what resolving spec.gadget, packageRunning and the
// download of the archive read.
func slimPackage(obj any) (any, error) {
	gp, ok := obj.(*v1alpha1.GadgetPackage)
	if !ok {
		return obj, nil
	}
	stripMeta(gp)
	gp.Spec.Settings = nil
	gp.Status.Conditions = nil
	gp.Status.Hooks = nil
	gp.Status.Catalog = nil
	gp.Status.Subscriptions = nil
	return gp, nil
}

// slimPod keeps what the enricher's index of the node's pods reads: names,
// labels and the containers' names and ids.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{TypeMeta: p.TypeMeta, ObjectMeta: p.ObjectMeta}
	out.ManagedFields, out.Annotations, out.OwnerReferences = nil, nil, nil
	keep := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		if len(in) == 0 {
			return nil
		}
		s := make([]corev1.ContainerStatus, len(in))
		for i, cs := range in {
			s[i] = corev1.ContainerStatus{Name: cs.Name, ContainerID: cs.ContainerID}
		}
		return s
	}
	out.Status.InitContainerStatuses = keep(p.Status.InitContainerStatuses)
	out.Status.ContainerStatuses = keep(p.Status.ContainerStatuses)
	out.Status.EphemeralContainerStatuses = keep(p.Status.EphemeralContainerStatuses)
	return out, nil
}
