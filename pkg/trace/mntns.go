package trace

import (
	"context"
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
// mount-namespace filter, the mount namespaces of the containers s.filter
// (see confine) selects, so that the kernel drops every other namespace's
// events before they are copied. The namespaces are computed at the start
// of the run and then kept in step with the containers that start and
// stop (syncMntNs, which runParams enables by setting s.liveMntNs); the
// container filter of the fan-out still applies, and it is what confines
// a Trace: the kernel's map only saves the copies.
//
// With no container selected, a privileged Trace's kernel filter stays
// off (the fan-out's filter alone picks a matching container that starts
// later); a confined Trace's is on with an empty map
// (ebpfstage.MntNsNone), filled as its namespace's containers come: the
// kernel drops every event rather than copy the whole node's for the
// fan-out to drop. An explicit mntns parameter wins over spec.filter (only
// a privileged Trace may set one) and is never changed.
func (c *Controller) runParams(tr *gadgetv1alpha1.Trace, l *loaded, s *subscriber) map[string]string {
	filter, confined := s.filter, s.confined
	params := tr.Spec.Parameters
	if filter == nil || !l.hasParam(ebpfstage.MntNsParam) {
		return params
	}
	if _, explicit := params[ebpfstage.MntNsParam]; explicit {
		return params
	}
	mntns := c.selectedMntNs([]*gadgetv1alpha1.ContainerFilter{filter}, nil)
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
	s.liveMntNs = true
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

// selectedMntNs returns, sorted, the mount namespaces of the containers on
// the node that any of filters selects. procs is a /proc scan to reuse, or
// nil to scan now.
func (c *Controller) selectedMntNs(filters []*gadgetv1alpha1.ContainerFilter, procs map[uint64]enricher.Process) []uint64 {
	ids := map[string]bool{}
	for _, f := range filters {
		maps.Copy(ids, c.pods.matchingIDs(f))
	}
	if len(ids) == 0 {
		return nil
	}
	if procs == nil {
		procs = enricher.Scan(c.procRoot())
	}
	// the runs' enrichers learn what this scan found: a namespace the
	// kernel filter lets through is then attributed to its container
	// even when the process that sent an event is gone by the time the
	// event is read
	c.enrich.Learn(procs)
	var out []uint64
	for ns, p := range procs {
		if p.ContainerID != "" && ids[p.ContainerID] {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

func (c *Controller) procRoot() string {
	if c.opts.ProcRoot == "" {
		return "/proc"
	}
	return c.opts.ProcRoot
}

// wakeMntNs asks syncMntNs to look at the runs again, without blocking.
func (c *Controller) wakeMntNs() {
	select {
	case c.mntnsWake <- struct{}{}:
	default:
	}
}

// syncMntNs keeps the kernel mount-namespace filter of every run that got
// it from its Traces' spec.filter in step with the node's containers: when
// the pods on the node change (a container starts, stops or goes) and when
// a run starts, each such run's map is set to the mount namespaces of the
// containers its Traces select, so a matching container that starts later
// is reported and one that is gone leaves the map. It returns when ctx
// ends and closes done.
func (c *Controller) syncMntNs(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.pods.changed:
		case <-c.mntnsWake:
		}
		c.refreshMntNs()
	}
}

// refreshMntNs sets the filter of every live-filtered run once.
func (c *Controller) refreshMntNs() {
	c.mu.Lock()
	runs := make([]*sharedRun, 0, len(c.byID))
	for _, r := range c.byID {
		runs = append(runs, r)
	}
	c.mu.Unlock()
	var procs map[uint64]enricher.Process // one /proc scan for every run
	for _, r := range runs {
		f := r.mntns.Load()
		if f == nil {
			continue
		}
		subs := r.subscribers()
		filters := make([]*gadgetv1alpha1.ContainerFilter, 0, len(subs))
		live := len(subs) > 0
		for _, s := range subs {
			// a Trace's explicit mntns parameter is its own to keep
			live = live && s.liveMntNs && s.filter != nil
			filters = append(filters, s.filter)
		}
		if !live {
			continue
		}
		if procs == nil {
			procs = enricher.Scan(c.procRoot())
		}
		ids := c.selectedMntNs(filters, procs)
		added, removed, err := f.Set(ids)
		if err != nil {
			c.log.Error(err, "update the kernel's mount-namespace filter", "run", r.id, "traces", subscriberNames(subs))
			continue
		}
		if added+removed > 0 {
			c.log.Info("updated the kernel's mount-namespace filter", "run", r.id, "traces", subscriberNames(subs), "added", added, "removed", removed, "mntns", ids)
		}
	}
}

func subscriberNames(subs []*subscriber) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.key.String()
	}
	return out
}
