package v1alpha1

// Condition types shared by PackageRepository and GadgetPackage. Ready is the
// summary a user reads; Reconciling and Stalled follow the kstatus
// conventions that Flux and kubectl wait understand.
const (
	// ConditionReady is True when the object does what its spec asks.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the controller works towards the
	// spec (downloading, installing, running hooks).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the controller gave up after its retry
	// limit; a spec change or the RetryAnnotation re-arms it.
	ConditionStalled = "Stalled"
	// ConditionDrifted, on a GadgetPackage whose spec.driftDetection.mode
	// is warn or enabled, says whether the last check found the release's
	// objects changed from its manifest: True (ReasonDriftDetected) while
	// they differ, False with ReasonDriftCorrected once mode enabled set
	// them back, False with ReasonNoDrift when they match. Absent when
	// drift detection is disabled or no check ran yet.
	ConditionDrifted = "Drifted"
)

// Condition reasons. Messages carry the details; reasons are stable
// CamelCase words for automation.
const (
	ReasonSucceeded        = "Succeeded"
	ReasonProgressing      = "Progressing"
	ReasonDisabled         = "Disabled"
	ReasonRetriesExhausted = "RetriesExhausted"
	ReasonIndexFailed      = "IndexFailed"
	ReasonDownloadFailed   = "DownloadFailed"
	ReasonVerifyFailed     = "VerificationFailed"
	ReasonLoadFailed       = "LoadFailed"
	ReasonInstallFailed    = "InstallFailed"
	ReasonHookFailed       = "HookFailed"
	ReasonInvalidSettings  = "InvalidSettings"
	ReasonDependencyNotMet = "DependencyNotMet"
	// ReasonRestoreFailed: the operator could not load, from what status
	// says was installed, a package it must tear down or upgrade after a
	// restart (its archive is gone from the store and the repository).
	ReasonRestoreFailed = "RestoreFailed"
	// ReasonCrashedInTask: the operator stopped (crashed) while a lifecycle
	// task of the package was running, as often as the attempt limit.
	ReasonCrashedInTask = "CrashedInTask"
	// ReasonNoDrift: the release's objects match its manifest
	// (ConditionDrifted False); ReasonDriftDetected and
	// ReasonDriftCorrected are its other reasons.
	ReasonNoDrift = "NoDrift"
)

// Annotations and finalizers of the gadgetpm.io group.
const (
	// RetryAnnotation re-arms a Stalled GadgetPackage when its value changes
	// (any value works; a timestamp is customary).
	RetryAnnotation = "gadgetpm.io/retry"
	// AdoptReleaseAnnotation on a GadgetPackage, set to "true", lets the
	// operator take over a Helm release of the package's name that it did
	// not make. Setting it re-arms a package Stalled on such a release.
	AdoptReleaseAnnotation = "gadgetpm.io/adopt-release"
	// RequiresAnnotation on a package's Chart.yaml lists the packages it
	// needs, as "name constraint" pairs separated by commas:
	// "net-base >=1.2, proc-base ^2".
	RequiresAnnotation = "gadgetpm.io/requires"
	// OrderAnnotation on a package's Chart.yaml orders packages that do not
	// depend on each other (lower first).
	OrderAnnotation = "gadgetpm.io/order"
	// PackageFinalizer lets the operator uninstall a package before its
	// GadgetPackage goes away.
	PackageFinalizer = "gadgetpm.io/package"
)
