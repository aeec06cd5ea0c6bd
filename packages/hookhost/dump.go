package hookhost

import (
	"time"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
)

// HookDump is one hook of a package, as `gadgetpm dump` shows it.
type HookDump struct {
	Name     string   `json:"name" yaml:"name"`
	Bindings []string `json:"bindings,omitempty" yaml:"bindings,omitempty"`
	// LastRun is when the hook last finished; nil before its first run.
	LastRun *time.Time `json:"lastRun,omitempty" yaml:"lastRun,omitempty"`
	// LastError of the last run; empty after a success.
	LastError string `json:"lastError,omitempty" yaml:"lastError,omitempty"`
	// Runs counts finished runs.
	Runs int `json:"runs" yaml:"runs"`
	// Output holds the last lines the hook printed (at most
	// hooks.DefaultOutputTail, each cut after hooks.MaxOutputTailLine
	// bytes), oldest first, across its runs since the package was last
	// loaded; lines the log dropped are kept here.
	Output []hooks.OutputLine `json:"output,omitempty" yaml:"output,omitempty"`
}

// SubscriptionDump is one kubernetes binding's monitor.
type SubscriptionDump struct {
	// Monitor ID: "<package key>/<hook>/<binding>".
	Monitor string `json:"monitor" yaml:"monitor"`
	Hook    string `json:"hook" yaml:"hook"`
	Binding string `json:"binding" yaml:"binding"`
	// APIVersion and Kind watched.
	APIVersion string `json:"apiVersion" yaml:"apiVersion"`
	Kind       string `json:"kind" yaml:"kind"`
	// Synced is true once the monitor listed its objects.
	Synced bool `json:"synced" yaml:"synced"`
	// WaitingForKind says why the monitor waits for its kind to be
	// served; empty while it watches.
	WaitingForKind string `json:"waitingForKind,omitempty" yaml:"waitingForKind,omitempty"`
	// Objects in its snapshot.
	Objects int `json:"objects" yaml:"objects"`
}

// Snapshots are the current objects of each kubernetes binding of one
// hook, by binding name.
type Snapshots map[string][]kubeevents.ObjectAndFilterResult

// PackageHooks is what the host knows of one prepared package.
type PackageHooks struct {
	// Values in effect: settings over defaults, with hooks' patches; nil
	// when they cannot be computed.
	Values map[string]any
	// Hooks in order, with their runs and output tails.
	Hooks []HookDump
	// Subscriptions are the package's kubernetes monitors.
	Subscriptions []SubscriptionDump
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
		hd := HookDump{Name: hk.Name, Bindings: hk.Bindings()}
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
		p.Subscriptions = append(p.Subscriptions, SubscriptionDump{
			Monitor: m.id, Hook: m.hook.Name, Binding: m.binding.Name,
			APIVersion: m.binding.Monitor.APIVersion, Kind: m.binding.Monitor.Kind,
			Synced: ev.Synced(m.id), WaitingForKind: ev.WaitingForKind(m.id), Objects: len(ev.Snapshot(m.id)),
		})
	}
	return p, true
}

// HookSnapshots returns the current objects of each kubernetes binding of
// one hook; false when the package or the hook is unknown.
func (h *Host) HookSnapshots(key, hook string) (Snapshots, bool) {
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
	out := Snapshots{}
	for _, b := range hk.Config.Kubernetes {
		out[b.Name] = h.opts.KubeEvents.Snapshot(b.Monitor.ID)
	}
	return out, true
}
