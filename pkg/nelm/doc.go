// Package nelm manages the Helm release of each gadget package through the
// Helm v3 SDK: install or upgrade (skipping no-op upgrades), delete,
// client-only rendering, and a drift monitor that reports rendered objects
// that went missing.
//
// A package's release is named after the GadgetPackage, lives in its
// namespace, and is stored by Helm's Secret driver there. Every operation
// gets a fresh action.Configuration over one shared discovery cache and REST
// mapper, with the Service's own QPS and burst. Files under the chart's
// gadget/ folder are stripped before install so release Secrets stay small.
//
// Service.InstallCRDs creates the CRDs of a chart's crds/ folders ahead of
// the release, as Helm does on install (create if missing, never update or
// delete), and waits until they are served.
//
// Service.Upgrade installs or upgrades and waits for readiness; it makes no
// revision when the release is deployed, its LabelChecksum and values match
// and no object is missing; it unlocks a release left pending by a crash;
// it refuses a release of the same name that gadgetpm did not make
// (ErrNotOwned) unless the GadgetPackage carries AdoptAnnotation. Delete
// uninstalls and waits for the objects to go. Render renders without a
// cluster for lint and `gadgetpm package render`.
//
// Each successful Upgrade starts the package's drift monitor, which checks
// at Options.MonitorInterval (plus jitter) that every object of the deployed
// revision exists and sends a Drift on Service.Drifts when one is missing.
// Pause and Resume (counted) silence it while hooks and upgrades run;
// StopMonitors stops all monitors and waits for them.
//
// A Package with DriftDetection warn or enabled is also checked for
// modified objects, at each monitor check and each skipped upgrade: a
// server-side-apply dry run of each manifest object, as Helm's field
// manager, is compared with the live object (less the ignored JSON
// pointers); differences are reported as a DriftDetected Event or, in
// mode enabled, applied for real and reported as DriftCorrected, without a
// new revision. Each such comparison, finding something or not, is also
// sent on Service.Drifts (Drift.Checked), for the package's status.
//
// A failed install or upgrade is remediated when the Package asks
// (InstallRemediation: uninstall; UpgradeRemediation: rollback to the last
// deployed revision, or uninstall), with a Remediated Event; a remediation
// that fails returns ErrRemediationFailed, which the caller treats as
// terminal.
//
// A Package with a ServiceAccount acts as it: install, upgrade, uninstall,
// release storage, readiness waits, the drift monitor's reads and the
// creation of crds/ go through clients impersonating it (pkg/identity),
// made on first use, shared by the packages acting as the same account and
// dropped when none does; the discovery cache and REST mapper stay the
// Service's one. An account that does not exist fails with
// ErrServiceAccountNotFound; a request the account may not make fails with
// an identity.ForbiddenError naming verb, resource, namespace and account,
// an Event with reason Forbidden and an error in the log.
//
// Progress and errors are recorded as Events on the GadgetPackage through
// Options.Recorder; a call its caller cancelled (a newer plan, a removal,
// a stop) returns the cancellation without an Event.
//
// It does not decide when a release changes, merge values or run hooks; the
// package manager does. It never deletes a release it did not make.
package nelm
