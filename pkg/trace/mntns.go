package trace

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
)

// runParams are the params a Trace's run loads its gadget with: the
// Trace's spec.parameters and, for a gadget with Inspektor Gadget's
// mount-namespace filter, the mount namespaces of the containers its
// spec.filter selects, so that the kernel drops every other namespace's
// events before they are copied. The namespaces are computed once, at the
// start of the run; the container filter of the fan-out still applies.
// With no container selected the kernel filter stays off: a matching
// container that starts later is then still seen. An explicit mntns
// parameter wins over spec.filter.
func (c *Controller) runParams(tr *gadgetv1alpha1.Trace, l *loaded, filter *gadgetv1alpha1.ContainerFilter) map[string]string {
	params := tr.Spec.Parameters
	if filter == nil || !l.hasParam(ebpfstage.MntNsParam) {
		return params
	}
	if _, explicit := params[ebpfstage.MntNsParam]; explicit {
		return params
	}
	ids := c.pods.matchingIDs(filter)
	if len(ids) == 0 {
		return params
	}
	procRoot := c.opts.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	var mntns []uint64
	for ns, p := range enricher.Scan(procRoot) {
		if p.ContainerID != "" && ids[p.ContainerID] {
			mntns = append(mntns, ns)
		}
	}
	if len(mntns) == 0 {
		return params
	}
	slices.Sort(mntns)
	list := make([]string, len(mntns))
	for i, ns := range mntns {
		list[i] = fmt.Sprint(ns)
	}
	out := maps.Clone(params)
	if out == nil {
		out = map[string]string{}
	}
	// a run keyed by these params serves only Traces selecting the same
	// namespaces: the kernel filter is the run's, not the Trace's
	out[ebpfstage.MntNsParam] = strings.Join(list, ",")
	c.log.V(1).Info("mount-namespace filter from spec.filter", "trace", tr.Namespace+"/"+tr.Name, "mntns", out[ebpfstage.MntNsParam])
	return out
}

func (l *loaded) hasParam(key string) bool {
	for _, p := range l.params {
		if p.Key == key {
			return true
		}
	}
	return false
}
