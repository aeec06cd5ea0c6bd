package trace

import (
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
)

// container is what the node knows of one container of a pod on it.
type container struct {
	namespace, pod, name string
	labels               map[string]string
}

// pods maps container ids of the pods on this node to their pods. It is
// fed by an informer on Pods with spec.nodeName=<node> and read on the
// event path; it is safe for concurrent use.
type pods struct {
	mu sync.RWMutex
	// byID: container id (without "runtime://") -> container; byPod: the
	// ids each pod contributed, to drop them on update and delete. Both
	// guarded by mu.
	byID  map[string]container
	byPod map[string][]string
	// changed (capacity 1) gets a value when the index changed: the live
	// mount-namespace filters follow it (see syncMntNs)
	changed chan struct{}
}

var _ enricher.PodResolver = (*pods)(nil)

func newPods() *pods {
	return &pods{byID: map[string]container{}, byPod: map[string][]string{}, changed: make(chan struct{}, 1)}
}

// Pod implements enricher.PodResolver.
func (p *pods) Pod(containerID string) (namespace, name string, ok bool) {
	c, ok := p.lookup(containerID)
	return c.namespace, c.pod, ok
}

// ContainerName implements enricher.ContainerNamer: the container's name
// in its pod's spec.
func (p *pods) ContainerName(containerID string) (string, bool) {
	c, ok := p.lookup(containerID)
	return c.name, ok
}

var _ enricher.ContainerNamer = (*pods)(nil)

func (p *pods) lookup(containerID string) (container, bool) {
	p.mu.RLock()
	c, ok := p.byID[containerID]
	p.mu.RUnlock()
	return c, ok
}

// containerID strips the runtime prefix of a containerStatuses id:
// "containerd://<id>" -> "<id>".
func containerID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}

// notify signals a change without blocking; call it without p.mu.
func (p *pods) notify() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *pods) set(pod *corev1.Pod) {
	defer p.notify()
	key := pod.Namespace + "/" + pod.Name
	var ids []string
	var add []container
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if id := containerID(cs.ContainerID); id != "" {
				ids = append(ids, id)
				add = append(add, container{namespace: pod.Namespace, pod: pod.Name, name: cs.Name, labels: pod.Labels})
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range p.byPod[key] {
		delete(p.byID, id)
	}
	if len(ids) == 0 {
		delete(p.byPod, key)
		return
	}
	p.byPod[key] = ids
	for i, id := range ids {
		p.byID[id] = add[i]
	}
}

func (p *pods) remove(namespace, name string) {
	defer p.notify()
	key := namespace + "/" + name
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range p.byPod[key] {
		delete(p.byID, id)
	}
	delete(p.byPod, key)
}

// handler keeps the index in step with an informer.
func (p *pods) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.onPod(obj) },
		UpdateFunc: func(_, obj any) { p.onPod(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				p.remove(pod.Namespace, pod.Name)
			}
		},
	}
}

func (p *pods) onPod(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		p.set(pod)
	}
}

// anyMatch reports whether a container on the node matches f.
func (p *pods) anyMatch(f *gadgetv1alpha1.ContainerFilter) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, c := range p.byID {
		if c.matches(f) {
			return true
		}
	}
	return false
}

// matchingIDs returns the ids of the containers on the node that match f.
func (p *pods) matchingIDs(f *gadgetv1alpha1.ContainerFilter) map[string]bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[string]bool{}
	for id, c := range p.byID {
		if c.matches(f) {
			out[id] = true
		}
	}
	return out
}

// matches reports whether c passes f; a nil or empty filter passes
// everything.
func (c container) matches(f *gadgetv1alpha1.ContainerFilter) bool {
	if f == nil {
		return true
	}
	if f.Namespace != "" && f.Namespace != c.namespace {
		return false
	}
	if f.Podname != "" && f.Podname != c.pod {
		return false
	}
	if f.ContainerName != "" && f.ContainerName != c.name {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := c.labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// emptyFilter reports whether f restricts nothing.
func emptyFilter(f *gadgetv1alpha1.ContainerFilter) bool {
	return f == nil || (f.Namespace == "" && f.Podname == "" && f.ContainerName == "" && len(f.Labels) == 0)
}
