package nelm

import (
	"context"
	"fmt"
	"strings"
	"sync"

	helmkube "helm.sh/helm/v3/pkg/kube"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/resource"
)

// NotReady is an object that did not become ready, and why.
type NotReady struct {
	Object Object
	// Reason in words, from Helm's ready checker or the object's status.
	Reason string
}

func (n NotReady) String() string { return n.Object.String() + " is not ready: " + n.Reason }

// notReadyObjects runs Helm's ready checker once over the objects of
// manifest and returns those it finds not ready. Helm's wait only says that
// it timed out; this says which object held it up.
func (op *operation) notReadyObjects(ctx context.Context, manifest string) ([]NotReady, error) {
	infos, err := op.manifestObjects(manifest)
	if err != nil {
		return nil, err
	}
	var out []NotReady
	for _, info := range infos {
		var (
			mu  sync.Mutex
			why string
		)
		checker := helmkube.NewReadyChecker(op.clients.clientset, func(format string, args ...any) {
			if isReadinessComplaint(format) {
				mu.Lock()
				why = fmt.Sprintf(format, args...)
				mu.Unlock()
			}
		}, helmkube.PausedAsReady(true))
		ready, err := checker.IsReady(ctx, info)
		if ready {
			continue
		}
		obj := Object{Kind: info.Mapping.GroupVersionKind.Kind, Namespace: info.Namespace, Name: info.Name}
		mu.Lock()
		reason := why
		mu.Unlock()
		switch {
		case err != nil:
			reason = err.Error()
		case reason != "":
			// The checker's message repeats the kind and name; keep what follows.
			if i := strings.Index(reason, obj.Namespace+"/"+obj.Name); i >= 0 {
				reason = strings.TrimLeft(reason[i+len(obj.Namespace+"/"+obj.Name):], ". :")
			}
		default:
			reason = statusSummary(info)
		}
		out = append(out, NotReady{Object: obj, Reason: reason})
	}
	return out, nil
}

// statusSummary describes an object's rollout from its status fields, for
// objects the ready checker rejected without saying why (a Deployment whose
// ReplicaSet was never created, for instance).
func statusSummary(info *resource.Info) string {
	if err := info.Get(); err != nil {
		return "read it: " + err.Error()
	}
	u, ok := info.Object.(*unstructured.Unstructured)
	if !ok {
		return "its status does not show it ready"
	}
	var parts []string
	gen := u.GetGeneration()
	observed, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if gen > 0 && observed < gen {
		parts = append(parts, fmt.Sprintf("generation %d not yet observed by its controller (observed %d)", gen, observed))
	}
	if want, ok, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); ok {
		have, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
		parts = append(parts, fmt.Sprintf("%d of %d replicas ready", have, want))
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] != "True" && m["message"] != nil {
			parts = append(parts, fmt.Sprintf("%v: %v", m["type"], m["message"]))
		}
	}
	if !found && len(conds) == 0 {
		parts = append(parts, "no status reported (is its controller running?)")
	}
	if len(parts) == 0 {
		return "its status does not show it ready"
	}
	return strings.Join(parts, "; ")
}
