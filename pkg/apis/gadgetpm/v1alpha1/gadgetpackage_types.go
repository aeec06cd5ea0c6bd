package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Phase is where a package stands in its lifecycle.
// +kubebuilder:validation:Enum=Pending;Loaded;Running
type Phase string

const (
	// PhasePending: not yet downloaded, verified and loaded.
	PhasePending Phase = "Pending"
	// PhaseLoaded: the package is on disk and loaded (hooks, schema,
	// catalog) but not started, e.g. because it is disabled.
	PhaseLoaded Phase = "Loaded"
	// PhaseRunning: startup hooks ran and the Helm release is deployed.
	PhaseRunning Phase = "Running"
)

// GadgetPackageSpec asks for one gadget package to be installed.
type GadgetPackageSpec struct {
	// Repository is the name of the PackageRepository to install from.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Repository string `json:"repository"`

	// Package is the package's name in the repository (its chart name).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`
	Package string `json:"package"`

	// Version is a semver constraint (Helm's syntax, e.g. ">=1.2 <2",
	// "^1.4", "~2.0.1", "1.x"); the newest matching version is installed.
	// Prereleases match only when the constraint names one. Defaults to "*".
	// A package of an oci:// repository may instead pin a manifest digest,
	// "sha256:<64 hex digits>" (an Inspektor Gadget image).
	// +kubebuilder:default="*"
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule=`self.matches(r'^\s*((!=|>=|=>|<=|=<|~>|[=<>~^])\s*)?v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?(\s+-\s+v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)?((\s*,\s*|\s+)((!=|>=|=>|<=|=<|~>|[=<>~^])\s*)?v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?(\s+-\s+v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)?)*(\s*\|\|\s*((!=|>=|=>|<=|=<|~>|[=<>~^])\s*)?v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?(\s+-\s+v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)?((\s*,\s*|\s+)((!=|>=|=>|<=|=<|~>|[=<>~^])\s*)?v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?(\s+-\s+v?([0-9]+|[xX*])(\.([0-9]+|[xX*])){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)?)*)*\s*$') || self.matches('^sha256:[0-9a-f]{64}$')`,message="version must be a semver constraint such as '>=1.2.0 <2', '^1.4', '~2.0' or '*', or a manifest digest sha256:<64 hex digits>"
	// +optional
	Version string `json:"version,omitempty"`

	// Settings are the package's values, validated against the chart's
	// values.schema.json and merged over its values.yaml.
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Settings *apiextensionsv1.JSON `json:"settings,omitempty"`

	// Enabled starts the package when true (the default) and stops it, keeping
	// it installed and loaded, when false.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// ServiceAccountName is the ServiceAccount, in the package's namespace,
	// whose rights the package gets: its Helm release, object patches and
	// Kubernetes event watches act as it (impersonation) and its hooks get
	// its tokens. Empty: the operator's --default-service-account when set,
	// else the operator's own identity (cluster-admin-equivalent).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// Install configures what happens when the package's Helm release
	// fails to install.
	// +optional
	Install *InstallSpec `json:"install,omitempty"`

	// Upgrade configures what happens when an upgrade of the package's Helm
	// release fails.
	// +optional
	Upgrade *UpgradeSpec `json:"upgrade,omitempty"`

	// DriftDetection compares the release's objects in the cluster with its
	// manifest and reports (warn) or corrects (enabled) fields changed
	// behind the release's back. Missing objects are always restored.
	// +optional
	DriftDetection *DriftDetection `json:"driftDetection,omitempty"`
}

// IsEnabled reports whether the spec asks for the package to run.
func (s *GadgetPackageSpec) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// InstallRetries returns spec.install.remediation.retries, and whether it
// is set: a failed install is then tried retries more times.
func (s *GadgetPackageSpec) InstallRetries() (int, bool) {
	if s.Install == nil || s.Install.Remediation == nil {
		return 0, false
	}
	return s.Install.Remediation.Retries, true
}

// UpgradeRetries returns spec.upgrade.remediation.retries, and whether it
// is set: a failed upgrade is then tried retries more times.
func (s *GadgetPackageSpec) UpgradeRetries() (int, bool) {
	if s.Upgrade == nil || s.Upgrade.Remediation == nil {
		return 0, false
	}
	return s.Upgrade.Remediation.Retries, true
}

// InstallSpec configures the install of a package's Helm release.
type InstallSpec struct {
	// Remediation of a failed install: the failed release is uninstalled,
	// so that the next attempt is a clean install.
	// +optional
	Remediation *InstallRemediation `json:"remediation,omitempty"`
}

// InstallRemediation says how often a failed install is retried.
type InstallRemediation struct {
	// Retries is how many times a failed install is tried again (each
	// after the failed release was uninstalled); 0 tries once. The
	// package is Stalled when the last attempt fails.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Retries int `json:"retries,omitempty"`
}

// UpgradeSpec configures upgrades of a package's Helm release.
type UpgradeSpec struct {
	// Remediation of a failed upgrade: rollback (the default) or
	// uninstall.
	// +optional
	Remediation *UpgradeRemediation `json:"remediation,omitempty"`
}

// RemediationStrategy is what is done with a release whose upgrade failed.
// +kubebuilder:validation:Enum=rollback;uninstall
type RemediationStrategy string

const (
	// RemediationRollback rolls the release back to its last deployed
	// revision (a new revision with that revision's manifest and values).
	RemediationRollback RemediationStrategy = "rollback"
	// RemediationUninstall uninstalls the release; the next attempt
	// installs it again.
	RemediationUninstall RemediationStrategy = "uninstall"
)

// UpgradeRemediation says how a failed upgrade is remediated and how often
// it is retried.
type UpgradeRemediation struct {
	// Retries is how many times a failed upgrade is tried again, each
	// after the remediation; 0 tries once. The package is Stalled when the
	// last attempt fails.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Retries int `json:"retries,omitempty"`
	// Strategy is done after each failed upgrade: rollback (to the last
	// deployed revision) or uninstall.
	// +kubebuilder:default=rollback
	// +optional
	Strategy RemediationStrategy `json:"strategy,omitempty"`
}

// DriftDetectionMode says what is done about objects of the release whose
// fields differ from its manifest.
// +kubebuilder:validation:Enum=disabled;warn;enabled
type DriftDetectionMode string

const (
	// DriftDetectionDisabled: only missing objects are looked for.
	DriftDetectionDisabled DriftDetectionMode = "disabled"
	// DriftDetectionWarn: changed fields are reported, not corrected.
	DriftDetectionWarn DriftDetectionMode = "warn"
	// DriftDetectionEnabled: changed fields are reported and set back to
	// the manifest's values.
	DriftDetectionEnabled DriftDetectionMode = "enabled"
)

// DriftDetection configures the detection of modified release objects.
type DriftDetection struct {
	// Mode: disabled (the default), warn or enabled.
	// +kubebuilder:default=disabled
	// +optional
	Mode DriftDetectionMode `json:"mode,omitempty"`
	// Ignore lists fields whose changes are not drift, per target.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Ignore []DriftIgnoreRule `json:"ignore,omitempty"`
}

// DriftIgnoreRule names fields, by JSON pointer, that drift detection
// leaves alone in the objects its target selects.
type DriftIgnoreRule struct {
	// Paths are JSON pointers (RFC 6901) into the object, e.g.
	// /spec/replicas or /metadata/annotations/example.com~1note.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^(/([^~/]|~[01])*)+$`
	// +kubebuilder:validation:items:MaxLength=512
	Paths []string `json:"paths"`
	// Target selects the objects; empty fields match any, no target
	// matches every object of the release.
	// +optional
	Target *DriftIgnoreTarget `json:"target,omitempty"`
}

// DriftIgnoreTarget selects release objects by kind, name and namespace.
type DriftIgnoreTarget struct {
	// Kind, e.g. Deployment.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the object.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`
	// Namespace of the object.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// Condition and Event reasons of remediation and drift detection.
const (
	// ReasonRemediated: a failed install or upgrade was remediated
	// (uninstalled or rolled back).
	ReasonRemediated = "Remediated"
	// ReasonRemediationFailed: the remediation itself failed; the package
	// is Stalled.
	ReasonRemediationFailed = "RemediationFailed"
	// ReasonDriftDetected: objects of the release differ from its
	// manifest.
	ReasonDriftDetected = "DriftDetected"
	// ReasonDriftCorrected: drifted fields were set back to the manifest's
	// values.
	ReasonDriftCorrected = "DriftCorrected"
)

// HookStatus is one hook of a package.
type HookStatus struct {
	// Name is the hook's path below hooks/.
	Name string `json:"name"`
	// Bindings the hook declared, as "<type>" or "<type>:<name>".
	// +optional
	Bindings []string `json:"bindings,omitempty"`
	// LastRunTime is when the hook last finished. Status follows the
	// hooks' runs within 3 seconds (one write per package per 3 seconds at
	// most; at once when a run changes LastError).
	// +optional
	LastRunTime *metav1.Time `json:"lastRunTime,omitempty"`
	// LastError is the error of the last run, empty after a success.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// Runs counts the hook's finished runs since the package was last
	// loaded (a reload of the same digest, as after a restart of the
	// operator, keeps the count), failures included. A run the operator cancelled itself (the
	// package was updated or removed, the operator stopped) is not counted
	// and leaves LastError as it was.
	// +optional
	Runs int64 `json:"runs,omitempty"`
	// Failures counts the runs among Runs that failed.
	// +optional
	Failures int64 `json:"failures,omitempty"`
}

// CatalogField is one field of a data source.
type CatalogField struct {
	// Name of the field.
	Name string `json:"name"`
	// Type of the field (e.g. uint32, string, timestamp).
	Type string `json:"type"`
	// Description from gadget.yaml.
	// +optional
	Description string `json:"description,omitempty"`
}

// CatalogDataSource is one stream of events or snapshots a gadget offers.
type CatalogDataSource struct {
	// Name of the data source.
	Name string `json:"name"`
	// Kind is "tracer" or "snapshotter".
	// +optional
	Kind string `json:"kind,omitempty"`
	// Fields of the data source.
	// +optional
	Fields []CatalogField `json:"fields,omitempty"`
}

// CatalogParam is one parameter a gadget accepts.
type CatalogParam struct {
	// Key is the parameter's name as used in a Trace's spec.parameters.
	Key string `json:"key"`
	// Type of the value.
	// +optional
	Type string `json:"type,omitempty"`
	// Default value.
	// +optional
	Default string `json:"default,omitempty"`
	// Description from gadget.yaml.
	// +optional
	Description string `json:"description,omitempty"`
	// PossibleValues are the only values accepted, when gadget.yaml lists them.
	// +optional
	PossibleValues []string `json:"possibleValues,omitempty"`
	// TypeHint narrows the values Type accepts (gadget.yaml's typeHint).
	// +optional
	TypeHint string `json:"typeHint,omitempty"`
}

// Catalog is everything a package's gadget offers.
type Catalog struct {
	// DataSources of the gadget.
	// +optional
	DataSources []CatalogDataSource `json:"dataSources,omitempty"`
	// Params of the gadget.
	// +optional
	Params []CatalogParam `json:"params,omitempty"`
}

// Subscription is a Trace that uses the package's gadget on a node.
type Subscription struct {
	// Node the gadget is loaded on.
	Node string `json:"node"`
	// Trace is the subscribing Trace as "<namespace>/<name>".
	Trace string `json:"trace"`
}

// GadgetPackageStatus is the observed state of a package.
type GadgetPackageStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Reconciling, Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Phase of the package.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Enabled is the scheduler's verdict: whether the package may run.
	// +optional
	Enabled bool `json:"enabled"`
	// Reason says why the package is not enabled, in words to act on
	// ("requires net-base >=1.2, found 1.1").
	// +optional
	Reason string `json:"reason,omitempty"`
	// Version installed.
	// +optional
	Version string `json:"version,omitempty"`
	// LastAttemptedVersion is the version last tried, successful or not.
	// +optional
	LastAttemptedVersion string `json:"lastAttemptedVersion,omitempty"`
	// Digest is the sha256 of the installed package archive; nodes fetch the
	// gadget by it.
	// +optional
	Digest string `json:"digest,omitempty"`
	// HelmRevision is the revision of the package's Helm release.
	// +optional
	HelmRevision int `json:"helmRevision,omitempty"`
	// Hooks of the package.
	// +optional
	Hooks []HookStatus `json:"hooks,omitempty"`
	// Catalog of the package's gadget.
	// +optional
	Catalog *Catalog `json:"catalog,omitempty"`
	// Subscriptions are the Traces using the gadget, at most 256. Each node
	// writes its own entries with server-side apply (field owner
	// gadgetpm-node/<node>), so nodes never overwrite each other.
	// +listType=map
	// +listMapKey=node
	// +listMapKey=trace
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Subscriptions []Subscription `json:"subscriptions,omitempty"`
	// LastHandledRetry is the RetryAnnotation value last acted on.
	// +optional
	LastHandledRetry string `json:"lastHandledRetry,omitempty"`
	// Failures counts the consecutive failed attempts of the package's
	// lifecycle tasks, of any phase, since the last success. A success,
	// a spec change or a new value of the RetryAnnotation resets it. It
	// survives restarts of the operator and leader changes.
	// +optional
	Failures int64 `json:"failures,omitempty"`
	// InstallFailures counts the consecutive failed attempts to install
	// the package (download, extract, load, first Helm release), reset
	// like Failures.
	// +optional
	InstallFailures int64 `json:"installFailures,omitempty"`
	// UpgradeFailures counts the consecutive failed attempts to upgrade
	// or remove an installed package (a new version or settings, a
	// re-applied release, an uninstall), reset like Failures.
	// +optional
	UpgradeFailures int64 `json:"upgradeFailures,omitempty"`
	// HookFailures counts the consecutive failed attempts of lifecycle
	// tasks that failed in a hook (onStartup, beforeHelm, afterHelm,
	// afterDeleteHelm, enabling bindings), reset like Failures.
	// +optional
	HookFailures int64 `json:"hookFailures,omitempty"`
	// LastAttempt is the lifecycle task running now, written before it
	// starts and cleared when its plan succeeds. An operator that finds it
	// set when it starts knows the task was cut short by a crash: it
	// counts a failed attempt and retries with backoff, and after the
	// attempt limit the package is Stalled, so a package that crashes the
	// operator cannot make it crash again at every start.
	// +optional
	LastAttempt *TaskAttempt `json:"lastAttempt,omitempty"`
}

// TaskAttempt is a lifecycle task of a package that was started.
type TaskAttempt struct {
	// Task is the task's name as the queue dump shows it ("install ns.name").
	Task string `json:"task"`
	// StartedAt is when the attempt started.
	StartedAt metav1.Time `json:"startedAt"`
}

// GadgetPackage installs one gadget package from a PackageRepository.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=gpkg;gpkgs,categories=gadgetpm
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="ENABLED",type=boolean,JSONPath=`.status.enabled`
// +kubebuilder:printcolumn:name="VERSION",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="REASON",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="PACKAGE",type=string,priority=1,JSONPath=`.spec.package`
// +kubebuilder:printcolumn:name="REPOSITORY",type=string,priority=1,JSONPath=`.spec.repository`
type GadgetPackage struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GadgetPackageSpec   `json:"spec"`
	Status GadgetPackageStatus `json:"status,omitempty"`
}

// GadgetPackageList is a list of GadgetPackage.
//
// +kubebuilder:object:root=true
type GadgetPackageList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GadgetPackage `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GadgetPackage{}, &GadgetPackageList{})
}
