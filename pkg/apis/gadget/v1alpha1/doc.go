// Package v1alpha1 contains the gadget.kinvolk.io/v1alpha1 API: the Trace
// resource, wire-compatible with the documented Inspektor Gadget Trace
// (spec.node, spec.gadget, spec.filter, spec.runMode, spec.outputMode,
// spec.parameters, the operation annotation and status.state/output/
// operationError/operationWarning) and extended with cron schedules, a run
// duration and a bounded run history.
//
// +kubebuilder:object:generate=true
// +groupName=gadget.kinvolk.io
package v1alpha1
