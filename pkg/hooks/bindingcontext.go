package hooks

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gadgetpm/gadgetpm/kubeevents"
)

// ContextType is the `type` field of a binding context.
type ContextType string

// Context types in shell-operator's words. onStartup and the Helm bindings
// carry no type.
const (
	ContextSchedule        ContextType = "Schedule"
	ContextSynchronization ContextType = ContextType(kubeevents.TypeSynchronization)
	ContextEvent           ContextType = ContextType(kubeevents.TypeEvent)
	ContextGroup           ContextType = "Group"
)

// BindingContext is one element of the JSON array behind
// BINDING_CONTEXT_PATH, in shell-operator's shape.
type BindingContext struct {
	// Binding is the binding's name (or group name for Group, or the
	// binding type for onStartup and the Helm bindings).
	Binding string `json:"binding"`
	// Type is empty for onStartup, beforeHelm, afterHelm, afterDeleteHelm.
	Type ContextType `json:"type,omitempty"`
	// WatchEvent, Object and FilterResult are set for Event.
	WatchEvent   kubeevents.WatchEvent      `json:"watchEvent,omitempty"`
	Object       *unstructured.Unstructured `json:"object,omitempty"`
	FilterResult json.RawMessage            `json:"filterResult,omitempty"`
	// Objects is set (possibly empty) for Synchronization.
	Objects *[]kubeevents.ObjectAndFilterResult `json:"objects,omitempty"`
	// Snapshots maps binding names to their current objects.
	Snapshots map[string][]kubeevents.ObjectAndFilterResult `json:"snapshots,omitempty"`
}

// Snapshots gives the current objects of a monitor. kubeevents' manager
// implements it; the ID is a kubernetes binding's Monitor.ID.
type Snapshots interface {
	Snapshot(monitorID string) []kubeevents.ObjectAndFilterResult
}

// Trigger is why a hook runs: a binding firing, before any snapshots are
// attached. Snapshots are attached when the run starts, so a run that waited
// in a queue sees the cluster as it is then.
type Trigger struct {
	// Type is the binding type that fired.
	Type BindingType
	// Binding is the binding's name (schedule and kubernetes); empty for
	// the others.
	Binding string
	// Event is the kubernetes event, for kubernetes bindings. Its MonitorID
	// tells which binding fired when several share a name.
	Event *kubeevents.Event
	// Index is the binding's position among the hook's bindings of its type
	// (Config.Schedules or Config.Kubernetes). It tells apart schedule
	// bindings that share a name; a trigger whose Index does not point at a
	// binding named Binding is matched by name (the first such binding).
	Index int
	// Resync makes a kubernetes trigger a Synchronization whose objects
	// are the binding's snapshot when the run starts: it stands for the
	// binding's pending events once there were too many of them to keep
	// (packages/hookhost, --max-pending-events-per-binding).
	Resync bool
}

// Label is how the trigger appears in logs and metrics: the binding type,
// or "<type>:<name>".
func (t Trigger) Label() string {
	if t.Binding == "" {
		return string(t.Type)
	}
	return string(t.Type) + ":" + t.Binding
}

// BindingContexts turns triggers into binding contexts for hook h, reading
// snapshots from snaps (which may be nil when h has no kubernetes bindings).
// As shell-operator compacts merged runs, a trigger of a grouped binding
// followed by a trigger of a binding in the same group gives no context:
// consecutive contexts of one group collapse to the last.
func (h *Hook) BindingContexts(triggers []Trigger, snaps Snapshots) []BindingContext {
	out := make([]BindingContext, 0, len(triggers))
	for i, t := range triggers {
		if g := h.group(t); g != "" && i+1 < len(triggers) && h.group(triggers[i+1]) == g {
			continue
		}
		out = append(out, h.bindingContext(t, snaps))
	}
	return out
}

// group is the group of the binding t fired for; empty for bindings that
// have none.
func (h *Hook) group(t Trigger) string {
	if c := h.common(t); c != nil {
		return c.Group
	}
	return ""
}

// common is the shared part of the schedule or kubernetes binding t fired
// for; nil for other triggers and unknown bindings.
func (h *Hook) common(t Trigger) *Common {
	switch t.Type {
	case Schedule:
		if b := h.scheduleBinding(t); b != nil {
			return &b.Common
		}
	case Kubernetes:
		if b := h.kubeBindingOf(t); b != nil {
			return &b.Common
		}
	}
	return nil
}

func (h *Hook) bindingContext(t Trigger, snaps Snapshots) BindingContext {
	switch t.Type {
	case OnStartup:
		return BindingContext{Binding: string(OnStartup)}
	case BeforeHelm, AfterHelm, AfterDeleteHelm:
		// Helm bindings see every kubernetes binding's snapshot.
		all := make([]string, 0, len(h.Config.Kubernetes))
		for _, b := range h.Config.Kubernetes {
			all = append(all, b.Name)
		}
		return BindingContext{Binding: string(t.Type), Snapshots: h.snapshots(all, snaps)}
	case Schedule:
		if b := h.scheduleBinding(t); b != nil {
			if b.Group != "" {
				return h.groupContext(b.Group, snaps)
			}
			return BindingContext{Binding: b.Name, Type: ContextSchedule, Snapshots: h.snapshots(b.IncludeSnapshotsFrom, snaps)}
		}
		return BindingContext{Binding: t.Binding, Type: ContextSchedule}
	case Kubernetes:
		kb := h.kubeBindingOf(t)
		if kb != nil && kb.Group != "" {
			return h.groupContext(kb.Group, snaps)
		}
		var include []string
		if kb != nil {
			include = kb.IncludeSnapshotsFrom
		}
		bc := BindingContext{Binding: t.Binding, Snapshots: h.snapshots(include, snaps)}
		if ev := t.Event; ev != nil {
			bc.Type = ContextType(ev.Type)
			switch ev.Type {
			case kubeevents.TypeSynchronization:
				objs := ev.Objects
				if t.Resync && kb != nil && snaps != nil {
					objs = snaps.Snapshot(kb.Monitor.ID)
				}
				if objs == nil {
					objs = []kubeevents.ObjectAndFilterResult{}
				}
				bc.Objects = &objs
			case kubeevents.TypeEvent:
				bc.WatchEvent = ev.WatchEvent
				if len(ev.Objects) > 0 {
					bc.Object = ev.Objects[0].Object
					bc.FilterResult = ev.Objects[0].FilterResult
				}
			}
		}
		return bc
	}
	return BindingContext{Binding: t.Label()}
}

// groupContext is the one context a grouped binding produces: the group's
// name and the snapshots of every binding in the group and of the bindings
// they include.
func (h *Hook) groupContext(group string, snaps Snapshots) BindingContext {
	var names []string
	for _, b := range h.Config.Kubernetes {
		if b.Group == group {
			names = append(names, b.Name)
			names = append(names, b.IncludeSnapshotsFrom...)
		}
	}
	for _, b := range h.Config.Schedules {
		if b.Group == group {
			names = append(names, b.IncludeSnapshotsFrom...)
		}
	}
	s := h.snapshots(names, snaps)
	if s == nil {
		s = map[string][]kubeevents.ObjectAndFilterResult{}
	}
	return BindingContext{Binding: group, Type: ContextGroup, Snapshots: s}
}

// scheduleBinding is the schedule binding trigger t fired for: the one at
// t.Index when it bears t's name, else the first of that name.
func (h *Hook) scheduleBinding(t Trigger) *ScheduleBinding {
	return pick(h.Config.Schedules, func(b *ScheduleBinding) string { return b.Name }, t.Index, t.Binding)
}

// kubeBindingOf is the kubernetes binding trigger t fired for: the one whose
// monitor sent t's event, else the one at t.Index when it bears t's name,
// else the first of that name.
func (h *Hook) kubeBindingOf(t Trigger) *KubernetesBinding {
	bs := h.Config.Kubernetes
	if t.Event != nil && t.Event.MonitorID != "" {
		for i := range bs {
			if bs[i].Monitor.ID == t.Event.MonitorID {
				return &bs[i]
			}
		}
	}
	return pick(bs, func(b *KubernetesBinding) string { return b.Name }, t.Index, t.Binding)
}

// pick returns bs[i] when it is named name, else the first binding named
// name, else nil.
func pick[B any](bs []B, nameOf func(*B) string, i int, name string) *B {
	if i >= 0 && i < len(bs) && nameOf(&bs[i]) == name {
		return &bs[i]
	}
	for j := range bs {
		if nameOf(&bs[j]) == name {
			return &bs[j]
		}
	}
	return nil
}

// snapshotBinding is the kubernetes binding whose objects are the snapshot
// called name: as in shell-operator, the last binding of that name.
func (h *Hook) snapshotBinding(name string) *KubernetesBinding {
	for i := len(h.Config.Kubernetes) - 1; i >= 0; i-- {
		if h.Config.Kubernetes[i].Name == name {
			return &h.Config.Kubernetes[i]
		}
	}
	return nil
}

// snapshots collects the named bindings' snapshots; nil when none are named.
func (h *Hook) snapshots(names []string, snaps Snapshots) map[string][]kubeevents.ObjectAndFilterResult {
	if len(names) == 0 {
		return nil
	}
	out := make(map[string][]kubeevents.ObjectAndFilterResult, len(names))
	for _, n := range names {
		items := []kubeevents.ObjectAndFilterResult{}
		if kb := h.snapshotBinding(n); kb != nil && snaps != nil {
			if got := snaps.Snapshot(kb.Monitor.ID); got != nil {
				items = got
			}
		}
		out[n] = items
	}
	return out
}
