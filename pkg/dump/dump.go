package dump

import (
	"encoding/json"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Hook is one hook of a package.
type Hook struct {
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
	Output []OutputLine `json:"output,omitempty" yaml:"output,omitempty"`
}

// OutputLine is one line a hook printed (hooks.OutputLine is this type).
type OutputLine struct {
	// Time the line was read.
	Time time.Time `json:"time" yaml:"time"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream" yaml:"stream"`
	// RunID of the run that printed it (the runID field of its log entry).
	RunID string `json:"runID" yaml:"runID"`
	// Text of the line, cut after hooks.MaxOutputTailLine bytes.
	Text string `json:"text" yaml:"text"`
}

// Subscription is one kubernetes binding's monitor.
type Subscription struct {
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
type Snapshots map[string][]Object

// Object is one watched object in a snapshot: the object (absent when
// the binding does not keep full objects in memory) and the result of
// the binding's jqFilter (absent without a filter). Its fields are those
// of kubeevents.ObjectAndFilterResult, which converts to it.
type Object struct {
	Object       *unstructured.Unstructured `json:"object,omitempty"`
	FilterResult json.RawMessage            `json:"filterResult,omitempty"`
}

// AnyKey in a secret value path (loader.Package.SecretValues) matches any
// key or list item: it stands for a schema's additionalProperties,
// patternProperties and items.
const AnyKey = "*"
