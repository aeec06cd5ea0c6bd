package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OperationAnnotation requests an operation on a Trace. The controller
// performs it, writes the outcome to status and then removes the annotation.
const OperationAnnotation = "gadget.kinvolk.io/operation"

// Operations accepted in OperationAnnotation.
const (
	// OperationStart runs the gadget until it is stopped (state Started).
	OperationStart = "start"
	// OperationStop stops the gadget and collects its output (state Stopped).
	OperationStop = "stop"
	// OperationGenerate runs the gadget for spec.duration (or the gadget's
	// default) and then reports Completed.
	OperationGenerate = "generate"
	// OperationCollect takes one snapshot from a snapshotter gadget.
	OperationCollect = "collect"
)

// TraceFinalizer lets the node stop a running gadget before its Trace goes.
const TraceFinalizer = "gadget.kinvolk.io/trace"

// RunMode says how a Trace is driven. Only Manual (by annotation or
// schedule) exists, as in Inspektor Gadget.
// +kubebuilder:validation:Enum=Manual
type RunMode string

// RunModeManual: operations come from the annotation or spec.schedule.
const RunModeManual RunMode = "Manual"

// OutputMode says where a Trace's events go.
// +kubebuilder:validation:Enum=Status;ExternalResource;File;Stream
type OutputMode string

const (
	// OutputStatus keeps the latest events in status.output (bounded).
	OutputStatus OutputMode = "Status"
	// OutputExternalResource writes each run's events into a ConfigMap owned
	// by the Trace.
	OutputExternalResource OutputMode = "ExternalResource"
	// OutputFile writes JSON lines under the node's output directory.
	OutputFile OutputMode = "File"
	// OutputStream serves events live from the node's HTTP endpoint.
	OutputStream OutputMode = "Stream"
)

// TraceState is where a Trace's gadget stands.
// +kubebuilder:validation:Enum=Started;Stopped;Completed
type TraceState string

const (
	// TraceStarted: the gadget runs.
	TraceStarted TraceState = "Started"
	// TraceStopped: the gadget was stopped by an operation.
	TraceStopped TraceState = "Stopped"
	// TraceCompleted: a generate or collect operation finished.
	TraceCompleted TraceState = "Completed"
)

// ContainerFilter restricts a Trace to matching containers. Empty fields
// match everything.
type ContainerFilter struct {
	// Namespace of the pods.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Podname is the name of the pod.
	// +optional
	Podname string `json:"podname,omitempty"`
	// ContainerName is the name of the container in the pod.
	// +optional
	ContainerName string `json:"containername,omitempty"`
	// Labels the pods must carry.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// TraceSpec says what to trace, where and how.
type TraceSpec struct {
	// Node to run the gadget on.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`

	// Gadget is the GadgetPackage providing the gadget, as "<name>" (in the
	// Trace's namespace first, then any namespace when unambiguous) or
	// "<namespace>/<name>".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Gadget string `json:"gadget"`

	// Filter restricts events to matching containers.
	// +optional
	Filter *ContainerFilter `json:"filter,omitempty"`

	// RunMode is always Manual.
	// +kubebuilder:default=Manual
	// +optional
	RunMode RunMode `json:"runMode,omitempty"`

	// OutputMode says where events go. Defaults to Status.
	// +kubebuilder:default=Status
	// +optional
	OutputMode OutputMode `json:"outputMode,omitempty"`

	// Output names the output target where the mode needs one (the file
	// name for File). Optional.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Output string `json:"output,omitempty"`

	// Parameters of the gadget, by key (see the package's status.catalog).
	// +optional
	Parameters map[string]string `json:"parameters,omitempty"`

	// Schedule runs the gadget periodically: a cron spec with 5 or 6 fields,
	// a descriptor (@hourly, @every 30s), optionally prefixed by CRON_TZ=.
	// Each tick runs for Duration.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^((CRON_)?TZ=[^\s]+\s+)?(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|@every\s+([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|[0-9A-Za-z*?,/#-]+(\s+[0-9A-Za-z*?,/#-]+){4,5})$')`,message="schedule must be a cron spec with 5 or 6 fields (e.g. '*/5 * * * *') or a descriptor such as '@hourly' or '@every 30s', optionally prefixed by CRON_TZ=<zone>"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// Duration of a generate operation or a scheduled run. Defaults to the
	// gadget's own default.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// HistoryLimit is the number of runs kept in status.runs and of output
	// ConfigMaps kept. Defaults to 5.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	HistoryLimit int32 `json:"historyLimit,omitempty"`

	// Suspend pauses the schedule; a running run finishes.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// TraceRun is one finished or running run of a Trace.
type TraceRun struct {
	// StartTime of the run.
	StartTime metav1.Time `json:"startTime"`
	// EndTime of the run; empty while it runs.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
	// Events delivered.
	// +optional
	Events int64 `json:"events,omitempty"`
	// Lost events (ring buffer full or sink overflow).
	// +optional
	Lost int64 `json:"lost,omitempty"`
	// Output names where the run's events are (ConfigMap or file name).
	// +optional
	Output string `json:"output,omitempty"`
	// Error of the run, empty on success.
	// +optional
	Error string `json:"error,omitempty"`
}

// TraceStatus is the outcome of the last operation and the run history.
type TraceStatus struct {
	// State of the gadget.
	// +optional
	State TraceState `json:"state,omitempty"`
	// Output holds the latest events as JSON (Status mode), bounded.
	// +optional
	Output string `json:"output,omitempty"`
	// OutputTruncated is true when Output dropped older events.
	// +optional
	OutputTruncated bool `json:"outputTruncated,omitempty"`
	// OperationError says why the last operation failed.
	// +optional
	OperationError string `json:"operationError,omitempty"`
	// OperationWarning is a non-fatal remark on the last operation.
	// +optional
	OperationWarning string `json:"operationWarning,omitempty"`
	// EventCount is the number of events of the current or last run.
	// +optional
	EventCount int64 `json:"eventCount,omitempty"`
	// LostCount is the number of events lost in the current or last run.
	// +optional
	LostCount int64 `json:"lostCount,omitempty"`
	// LastRunTime is when the last run started.
	// +optional
	LastRunTime *metav1.Time `json:"lastRunTime,omitempty"`
	// SkippedRuns counts schedule ticks skipped because a run still went.
	// +optional
	SkippedRuns int64 `json:"skippedRuns,omitempty"`
	// Runs is the run history, newest last, at most spec.historyLimit.
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Runs []TraceRun `json:"runs,omitempty"`
}

// Trace runs a gadget on a node, on demand or on a schedule.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=tr,categories=gadget
// +kubebuilder:printcolumn:name="NODE",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="GADGET",type=string,JSONPath=`.spec.gadget`
// +kubebuilder:printcolumn:name="STATE",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="SCHEDULE",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="LAST RUN",type=date,JSONPath=`.status.lastRunTime`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="ERROR",type=string,priority=1,JSONPath=`.status.operationError`
type Trace struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TraceSpec   `json:"spec"`
	Status TraceStatus `json:"status,omitempty"`
}

// TraceList is a list of Trace.
//
// +kubebuilder:object:root=true
type TraceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Trace `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Trace{}, &TraceList{})
}
