package hookhost

import (
	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/pkg/dump"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
)

// PackageHooks is what the host knows of one prepared package.
type PackageHooks struct {
	// Values in effect: settings over defaults, with hooks' patches; nil
	// when they cannot be computed.
	Values map[string]any
	// Hooks in order, with their runs and output tails.
	Hooks []dump.Hook
	// Subscriptions are the package's kubernetes monitors.
	Subscriptions []dump.Subscription
}

// Package returns the hooks, values and monitors of the package key;
// false when it has no hooks prepared. The result is a copy.
func (h *Host) Package(key string) (PackageHooks, bool) {
	ph, err := h.pkg(key)
	if err != nil {
		return PackageHooks{}, false
	}
	var p PackageHooks
	if v, err := ph.values.PackageValues(); err == nil {
		p.Values = v
	}
	ph.mu.Lock()
	for _, hk := range ph.hooks {
		hd := dump.Hook{Name: hk.Name, Bindings: hk.Bindings()}
		if r := ph.runs[hk.Name]; r != nil {
			t := r.last
			hd.LastRun, hd.LastError, hd.Runs = &t, r.lastErr, r.count
		}
		hd.Output = h.opts.Runner.Output(hk.ID())
		p.Hooks = append(p.Hooks, hd)
	}
	ph.mu.Unlock()
	ev := h.opts.KubeEvents
	for _, m := range ph.monitors {
		p.Subscriptions = append(p.Subscriptions, dump.Subscription{
			Monitor: m.id, Hook: m.hook.Name, Binding: m.binding.Name,
			APIVersion: m.binding.Monitor.APIVersion, Kind: m.binding.Monitor.Kind,
			Synced: ev.Synced(m.id), WaitingForKind: ev.WaitingForKind(m.id), Objects: len(ev.Snapshot(m.id)),
		})
	}
	return p, true
}

// HookSnapshots returns the current objects of each kubernetes binding of
// one hook; false when the package or the hook is unknown.
func (h *Host) HookSnapshots(key, hook string) (dump.Snapshots, bool) {
	ph, err := h.pkg(key)
	if err != nil {
		return nil, false
	}
	var hk *hooks.Hook
	for _, c := range ph.hooks {
		if c.Name == hook {
			hk = c
		}
	}
	if hk == nil {
		return nil, false
	}
	out := dump.Snapshots{}
	for _, b := range hk.Config.Kubernetes {
		out[b.Name] = snapshot(h.opts.KubeEvents.Snapshot(b.Monitor.ID))
	}
	return out, true
}

// snapshot converts a monitor's snapshot to the dump's type; nil (an
// unknown monitor) stays nil.
func snapshot(objs []kubeevents.ObjectAndFilterResult) []dump.Object {
	if objs == nil {
		return nil
	}
	out := make([]dump.Object, len(objs))
	for i, o := range objs {
		out[i] = dump.Object(o)
	}
	return out
}
