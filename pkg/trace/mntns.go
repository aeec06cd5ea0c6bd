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
// mount-namespace filter, the mount namespaces of the containers filter
// (see confine) selects, so that the kernel drops every other namespace's
// events before they are copied. The namespaces are computed once, at the
// start of the run; the container filter of the fan-out still applies,
// and it is what confines a Trace: the kernel's map only saves the copies.
//
// With no container selected, a privileged Trace's kernel filter stays
// off, so that a matching container that starts later is still seen; a
// confined Trace's is on with an empty map (ebpfstage.MntNsNone): the
// kernel drops every event rather than copy the whole node's for the
// fan-out to drop. An explicit mntns parameter wins over spec.filter (only
// a privileged Trace may set one).
func (c *Controller) runParams(tr *gadgetv1alpha1.Trace, l *loaded, filter *gadgetv1alpha1.ContainerFilter, confined bool) map[string]string {
	params := tr.Spec.Parameters
	if filter == nil || !l.hasParam(ebpfstage.MntNsParam) {
		return params
	}
	if _, explicit := params[ebpfstage.MntNsParam]; explicit {
		return params
	}
	procRoot := c.opts.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	var mntns []uint64
	if ids := c.pods.matchingIDs(filter); len(ids) > 0 {
		for ns, p := range enricher.Scan(procRoot) {
			if p.ContainerID != "" && ids[p.ContainerID] {
				mntns = append(mntns, ns)
			}
		}
	}
	if len(mntns) == 0 && !confined {
		return params
	}
	value := ebpfstage.MntNsNone
	if len(mntns) > 0 {
		slices.Sort(mntns)
		list := make([]string, len(mntns))
		for i, ns := range mntns {
			list[i] = fmt.Sprint(ns)
		}
		value = strings.Join(list, ",")
	}
	out := maps.Clone(params)
	if out == nil {
		out = map[string]string{}
	}
	// a run keyed by these params serves only Traces selecting the same
	// namespaces: the kernel filter is the run's, not the Trace's
	out[ebpfstage.MntNsParam] = value
	c.log.V(1).Info("mount-namespace filter from spec.filter", "trace", tr.Namespace+"/"+tr.Name, "confined", confined, "mntns", value)
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
