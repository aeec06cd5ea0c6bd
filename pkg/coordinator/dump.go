package coordinator

import (
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/dump"
	"github.com/gadgetpm/gadgetpm/queue"
)

var _ debugserver.Source = (*Coordinator)(nil)

// Dump returns the operator's whole state.
func (c *Coordinator) Dump() debugserver.Dump {
	d := debugserver.Dump{
		Time:              time.Now().UTC(),
		Queues:            c.queues.Dump(),
		Schedules:         c.cron.Entries(),
		Enablement:        c.sched.Statuses(),
		PendingKubeEvents: c.events.Pending(),
	}
	for _, key := range c.packages.Keys() {
		if p, ok := c.Package(key); ok {
			d.Packages = append(d.Packages, p)
		}
	}
	return d
}

// Package returns one package's part of the dump.
func (c *Coordinator) Package(key string) (debugserver.PackageDump, bool) {
	st, ok := c.packages.State(key)
	if !ok {
		return debugserver.PackageDump{}, false
	}
	p := debugserver.PackageDump{
		Key: key, Package: st.Package, Phase: string(st.Phase), Enabled: st.Enabled, Reason: st.Reason,
		Version: st.Version, Digest: st.Digest, HelmRevision: st.HelmRevision,
		Queues:       []string{queue.PackageQueueName(key, "")},
		SecretValues: st.SecretValues,
	}
	for _, q := range st.Queues {
		p.Queues = append(p.Queues, queue.PackageQueueName(key, q))
	}
	hp, ok := c.hooks.Package(key)
	if !ok {
		p.Values = st.Values
		for _, h := range st.Hooks {
			p.Hooks = append(p.Hooks, dump.Hook{Name: h.Name, Bindings: h.Bindings, LastError: h.LastError})
		}
		return p, true
	}
	p.Values, p.Hooks, p.Subscriptions = hp.Values, hp.Hooks, hp.Subscriptions
	return p, true
}

// HookSnapshots returns the current objects of each kubernetes binding of
// one hook.
func (c *Coordinator) HookSnapshots(key, hook string) (dump.Snapshots, bool) {
	return c.hooks.HookSnapshots(key, hook)
}
