package kubeevents

import (
	"encoding/json"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// WatchEvent is what happened to an object, in shell-operator's words.
type WatchEvent string

const (
	WatchEventAdded    WatchEvent = "Added"
	WatchEventModified WatchEvent = "Modified"
	WatchEventDeleted  WatchEvent = "Deleted"
)

// EventType is the type of a kubernetes binding context.
type EventType string

const (
	// TypeSynchronization is sent once per monitor after the initial list,
	// with every matching object.
	TypeSynchronization EventType = "Synchronization"
	// TypeEvent is sent for one object that was added, modified or deleted.
	TypeEvent EventType = "Event"
)

// ObjectAndFilterResult is one watched object as a hook sees it: the object
// (omitted from snapshots when keepFullObjectsInMemory is false) and the
// result of the binding's jqFilter (absent without a filter).
type ObjectAndFilterResult struct {
	Object       *unstructured.Unstructured `json:"object,omitempty"`
	FilterResult json.RawMessage            `json:"filterResult,omitempty"`
}

// Event is what a monitor reports.
type Event struct {
	// MonitorID is the ID from the monitor's Config.
	MonitorID string
	// Binding is the binding's name from its Config.
	Binding string
	// Type is Synchronization or Event.
	Type EventType
	// WatchEvent is set for TypeEvent.
	WatchEvent WatchEvent
	// Objects holds every object for Synchronization and exactly one for
	// Event.
	Objects []ObjectAndFilterResult
}

// NamespaceSelector restricts a monitor to namespaces by name or labels.
type NamespaceSelector struct {
	// MatchNames lists namespaces by name.
	MatchNames []string
	// LabelSelector selects namespaces by their labels; the monitor then
	// watches namespaces and follows the set as it changes.
	LabelSelector *metav1.LabelSelector
}

// Config describes one kubernetes binding to watch. pkg/hooks builds it from
// a hook's `--config` output.
type Config struct {
	// ID identifies the monitor; the owner chooses it (the coordinator uses
	// "<package key>/<hook>/<binding>").
	ID string
	// Binding is the binding's name, copied into every Event.
	Binding string
	// APIVersion and Kind of the watched objects. Kind is matched
	// case-insensitively, as a plural or a short name too, through the REST
	// mapper.
	APIVersion string
	Kind       string
	// NameSelector lists object names (matchNames).
	NameSelector []string
	// Namespace restricts the watched namespaces; nil means all.
	Namespace *NamespaceSelector
	// LabelSelector and FieldSelector filter objects on the server.
	LabelSelector *metav1.LabelSelector
	FieldSelector string
	// JqFilter is applied to every object; a Modified event whose filter
	// result did not change is not reported.
	JqFilter string
	// ExecuteHookOnEvent lists the watch events reported; nil means all
	// three, empty means none (only Synchronization).
	ExecuteHookOnEvent []WatchEvent
	// ExecuteHookOnSynchronization reports the Synchronization event.
	ExecuteHookOnSynchronization bool
	// KeepFullObjectsInMemory keeps whole objects in snapshots; when false
	// only filter results are kept.
	KeepFullObjectsInMemory bool
	// ResyncPeriod re-lists periodically; zero disables it.
	ResyncPeriod time.Duration
	// ServiceAccount, when set, is the identity the monitor lists and
	// watches as (impersonated); nil: the operator's own. Monitors of
	// different identities share no client and no informer.
	ServiceAccount *ServiceAccount
}

// ServiceAccount names a service account a monitor acts as.
type ServiceAccount struct {
	Namespace, Name string
}

// User is the user name the API server knows the account by.
func (sa ServiceAccount) User() string {
	return "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
}

func (sa ServiceAccount) String() string { return sa.Namespace + "/" + sa.Name }
