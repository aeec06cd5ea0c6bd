package manager

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	helmchart "helm.sh/helm/v3/pkg/chart"

	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler"
)

// Fetcher gets a package onto disk and loads it; *fetch.Fetcher is one.
type Fetcher interface {
	Download(ctx context.Context, gp *v1alpha1.GadgetPackage) (fetch.Downloaded, error)
	Install(ctx context.Context, digest string) (string, error)
	Load(ctx context.Context, dir string, gp *v1alpha1.GadgetPackage) (*loader.Package, error)
}

// Release is what Run asks Helm to apply.
type Release struct {
	// Name and Namespace of the Helm release.
	Name, Namespace string
	// Chart without gadget/ and hooks/.
	Chart *helmchart.Chart
	// Values are the settings merged with hook patches.
	Values map[string]any
	// AdoptRelease: the GadgetPackage carries
	// v1alpha1.AdoptReleaseAnnotation=true, so a release of this name the
	// operator did not make may be taken over.
	AdoptRelease bool
	// ServiceAccount, in Namespace, is who the release acts as:
	// spec.serviceAccountName, else Options.DefaultServiceAccount; empty
	// means the operator's own identity.
	ServiceAccount string
	// InstallRemediation, UpgradeRemediation and DriftDetection are the
	// GadgetPackage's spec.install.remediation, spec.upgrade.remediation
	// and spec.driftDetection.
	InstallRemediation *v1alpha1.InstallRemediation
	UpgradeRemediation *v1alpha1.UpgradeRemediation
	DriftDetection     *v1alpha1.DriftDetection
}

// Releaser applies and deletes Helm releases; pkg/nelm implements it.
// Delete gets the Release without Chart and Values.
type Releaser interface {
	Upgrade(ctx context.Context, r Release) (revision int, err error)
	Delete(ctx context.Context, r Release) error
}

// HookRunner runs a package's hooks and owns their bindings and values;
// packages/hookhost implements it over pkg/hooks.
type HookRunner interface {
	// Prepare takes a freshly loaded package (replacing an earlier
	// version's hooks): it builds its hooks and values and registers its
	// kubernetes bindings, stopped.
	Prepare(ctx context.Context, key string, p *loader.Package, gp *v1alpha1.GadgetPackage) error
	// SetSettings replaces the package's settings; hooks' values patches
	// are kept.
	SetSettings(key string, gp *v1alpha1.GadgetPackage) error
	// RunBinding runs every hook declaring binding (onStartup, beforeHelm,
	// afterHelm, afterDeleteHelm) in the hooks' order.
	RunBinding(ctx context.Context, key, binding string) error
	// Enable starts the package's kubernetes monitors, waits for the
	// Synchronization runs its bindings wait for, and starts its
	// schedules.
	Enable(ctx context.Context, key string) error
	// Disable stops the package's monitors and schedules.
	Disable(key string)
	// Values are the package's values as its chart sees them, hooks'
	// patches included.
	Values(key string) (map[string]any, error)
	// Forget drops the package.
	Forget(key string)
}

// Scheduler is told which packages are loaded and running, for
// enablement across the cluster; *scheduler.Scheduler is one.
type Scheduler interface {
	AddPackage(p scheduler.Package) error
	SetState(key string, running bool, version string) error
	RemovePackage(key string)
	Status(key string) (scheduler.Status, bool)
}

// Unsubscriber waits, before a package's Helm release is deleted, for the
// nodes to stop the Traces that use its gadget (its status.subscriptions
// to empty); pkg/coordinator implements it over the API server.
type Unsubscriber interface {
	// WaitUnsubscribed returns nil once gp has no subscriptions, or once
	// its own timeout passed (it reports the Traces that still held it);
	// an error fails the uninstall task, which is retried.
	WaitUnsubscribed(ctx context.Context, gp *v1alpha1.GadgetPackage) error
}

// Options configure a Manager.
type Options struct {
	// Fetcher is required.
	Fetcher Fetcher
	// Releaser applies the chart; nil applies nothing.
	Releaser Releaser
	// Hooks runs hooks; nil runs none.
	Hooks HookRunner
	// Scheduler is required: it gets every loaded package (Load), its
	// running state (Run, Disable) and its removal (Uninstall), and
	// decides enablement, the one dependency model of the process. Calls
	// are made with no lock held.
	Scheduler Scheduler
	// Unsubscriber, when set, is waited for before a package's release is
	// deleted; nil waits for nothing.
	Unsubscriber Unsubscriber
	// DefaultServiceAccount is the ServiceAccount, in a package's
	// namespace, its release acts as when its spec.serviceAccountName is
	// empty; empty too: the operator's own identity.
	DefaultServiceAccount string
}

// State is one package's state; the controller maps it to status.
type State struct {
	Key string
	// Package is the chart name asked for.
	Package string
	Phase   v1alpha1.Phase
	// Enabled and Reason: whether the package may run and, if not, why.
	Enabled bool
	Reason  string
	// Version and Digest installed; LastAttemptedVersion last tried.
	Version, Digest, LastAttemptedVersion string
	// Values in effect (settings merged over values.yaml defaults).
	Values map[string]any
	// SecretValues are the paths into Values that the package's schema
	// marks secret (loader.Package.SecretValues), for the dump to redact.
	SecretValues [][]string
	// Hooks with their bindings.
	Hooks []v1alpha1.HookStatus
	// Catalog of the gadget.
	Catalog *v1alpha1.Catalog
	// HelmRevision of the release; 0 before the first Run.
	HelmRevision int
	// Requires from Chart.yaml.
	Requires []scheduler.Requirement
	// Queues are the custom queues the hooks name, sorted.
	Queues []string
	// Dir is the extracted package.
	Dir string
	// Drift is what the last comparison of the release's objects with its
	// manifest found (spec.driftDetection warn or enabled); nil when none
	// was made since the process started, so status keeps what it says.
	Drift *DriftReport
}

// DriftReport is the outcome of one comparison of a package's release
// objects with the release's manifest (RecordDrift).
type DriftReport struct {
	// Revision of the release compared.
	Revision int
	// Objects names the objects that differed and a few of their paths,
	// "ConfigMap ns/name at /data/key"; empty when none did.
	Objects string
	// Mode is the spec.driftDetection.mode the comparison applied.
	Mode v1alpha1.DriftDetectionMode
	// Corrected: they were set back to the manifest's values.
	Corrected bool
}

type entry struct {
	// gp is the latest spec handed to Plan (or Restore); never nil, since
	// every task of the package, its teardown too, names its release by it.
	gp    *v1alpha1.GadgetPackage
	state State
	pkg   *loader.Package
	// gen counts Plans; a task from an older plan is stale and does nothing.
	gen int
	// pendingDigest and pendingDir: downloaded and extracted by the
	// current plan's Download and Install, for its Load. A plan that
	// downloads starts them empty, so its Install and Load never take an
	// earlier plan's.
	pendingDigest, pendingDir string
	// started: the onStartup hooks ran and the bindings are enabled for
	// the loaded version. It follows what happened, not the plan: a
	// Startup of an older plan that ran still counts.
	started bool
	// restored: the state came from status (Restore) and no Plan ran
	// since.
	restored bool
	// rearmed: the next Plan starts over from Download whatever the spec
	// (Rearm); the spec itself is kept for tasks planned meanwhile.
	rearmed bool
	// onStartupDone: the onStartup hooks ran for the loaded version and
	// enablement, though enabling the bindings may not have finished (it
	// failed, or a newer plan cancelled it). A retried Startup does not
	// run them again, as in shell-operator.
	onStartupDone bool
}

// Manager holds every package's state. It is safe for concurrent use.
type Manager struct {
	opts Options

	mu sync.Mutex
	// pkgs by key; guarded by mu. Entries are only changed under mu and
	// never handed out: State returns copies.
	pkgs map[string]*entry
}

// New returns a Manager.
func New(opts Options) (*Manager, error) {
	if opts.Fetcher == nil {
		return nil, errors.New("create package manager: Fetcher is required")
	}
	if opts.Scheduler == nil {
		return nil, errors.New("create package manager: Scheduler is required (it decides which packages may run)")
	}
	return &Manager{opts: opts, pkgs: map[string]*entry{}}, nil
}

// Key is the package key of a GadgetPackage: "<namespace>.<name>".
func Key(gp *v1alpha1.GadgetPackage) string { return gp.Namespace + "." + gp.Name }

// State returns a copy of key's state.
func (m *Manager) State(key string) (State, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pkgs[key]
	if !ok {
		return State{}, false
	}
	return e.state, true
}

// Keys lists the known packages, sorted.
func (m *Manager) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.pkgs))
	for k := range m.pkgs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Plan registers gp's latest spec and returns the tasks that bring the
// package to it, in order, for its main queue:
//
//   - new package, or a new version constraint, package name or service
//     account (its hooks and bindings act as it): Download, Install,
//     Load, Startup, Run
//   - settings changed: ApplySettings, Run
//   - spec.driftDetection changed: Run
//   - enabled changed to false: Disable; to true: Startup, Run
//   - nothing changed: none
//
// Each Plan renews the package: tasks of earlier plans still queued do
// nothing when they run.
func (m *Manager) Plan(gp *v1alpha1.GadgetPackage) []queue.Task {
	key := Key(gp)
	gp = gp.DeepCopy()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pkgs[key]
	if !ok {
		e = &entry{state: State{Key: key, Package: gp.Spec.Package, Phase: v1alpha1.PhasePending, Digest: gp.Status.Digest, Version: gp.Status.Version}}
		m.pkgs[key] = e
	}
	prev := e.gp
	if e.restored || e.rearmed {
		// Known from status only, or re-armed: whatever the spec, the
		// plan loads the package again (for a restored one, an upgrade of
		// the release status names).
		prev, e.restored, e.rearmed = nil, false, false
	}
	e.gp = gp
	var kinds []kind
	switch {
	case prev == nil || prev.Spec.Package != gp.Spec.Package || prev.Spec.Version != gp.Spec.Version || prev.Spec.Repository != gp.Spec.Repository ||
		prev.Spec.ServiceAccountName != gp.Spec.ServiceAccountName:
		kinds = []kind{kindDownload, kindInstall, kindLoad, kindStartup, kindRun}
	case !reflect.DeepEqual(prev.Spec.Settings, gp.Spec.Settings):
		if e.pkg == nil {
			kinds = []kind{kindDownload, kindInstall, kindLoad, kindStartup, kindRun}
		} else {
			kinds = []kind{kindApplySettings, kindRun}
		}
	case prev.Spec.IsEnabled() && !gp.Spec.IsEnabled():
		kinds = []kind{kindDisable}
	case !prev.Spec.IsEnabled() && gp.Spec.IsEnabled():
		kinds = []kind{kindStartup, kindRun}
	case !reflect.DeepEqual(prev.Spec.DriftDetection, gp.Spec.DriftDetection) && gp.Spec.IsEnabled():
		// The release is checked (and, in mode enabled, corrected) with
		// the new drift detection at once, and its monitor takes it over.
		if e.pkg == nil {
			kinds = []kind{kindDownload, kindInstall, kindLoad, kindStartup, kindRun}
		} else {
			kinds = []kind{kindRun}
		}
	}
	if len(kinds) == 0 {
		// Same spec: the tasks already planned (maybe still queued) stay
		// current.
		return nil
	}
	if kinds[0] == kindDownload {
		e.pendingDigest, e.pendingDir = "", ""
	}
	e.gen++
	tasks := make([]queue.Task, len(kinds))
	for i, k := range kinds {
		tasks[i] = &task{m: m, key: key, gen: e.gen, kind: k}
	}
	return tasks
}

// Restore makes a package known from its status, for a manager that has
// not planned it since the process started (a restart, a new leader): the
// version, digest, phase, enablement, Helm revision, hooks and catalog
// that status says are installed become its state, so that the status
// written from it does not go back to Pending, and so that Remove and a
// changed spec start from what was installed. Its first Plan still runs
// Download to Run (the hooks must be loaded to run again); PlanRemove
// first loads the installed digest back (the restore task). It reports
// whether it restored anything: not for a known package, nor for one
// whose status names nothing installed.
func (m *Manager) Restore(gp *v1alpha1.GadgetPackage) bool {
	s := &gp.Status
	if s.Digest == "" && s.HelmRevision == 0 {
		return false
	}
	key := Key(gp)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pkgs[key]; ok {
		return false
	}
	phase := s.Phase
	if phase == "" {
		phase = v1alpha1.PhasePending
	}
	m.pkgs[key] = &entry{gp: gp.DeepCopy(), restored: true, state: State{Key: key, Package: gp.Spec.Package, Phase: phase,
		Enabled: s.Enabled, Reason: s.Reason, Version: s.Version, Digest: s.Digest, LastAttemptedVersion: s.LastAttemptedVersion,
		HelmRevision: s.HelmRevision, Hooks: append([]v1alpha1.HookStatus(nil), s.Hooks...), Catalog: s.Catalog.DeepCopy()}}
	return true
}

// Rearm makes the next Plan of key start over from Download, as after a
// Stalled package is retried. The package keeps its spec: a removal
// planned before that Plan tears down the release it names.
func (m *Manager) Rearm(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.pkgs[key]; ok {
		e.rearmed = true
	}
}

// PlanStart returns the task that starts a loaded package — Start:
// Startup and Run in one — as when the scheduler enabled it because a
// requirement now runs. The task belongs to the current plan: queued
// behind that plan's own tasks it leaves them current, and it does
// nothing when the package runs by then (the scheduler's first word on a
// package that just loaded races the Startup of the plan that loaded it;
// a Disable still queued is followed, not overtaken). It returns nil for
// a package that is not loaded.
func (m *Manager) PlanStart(key string) []queue.Task {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, found := m.pkgs[key]
	if !found || e.rearmed || e.pkg == nil {
		return nil
	}
	return []queue.Task{&task{m: m, key: key, gen: e.gen, kind: kindStart}}
}

// PlanDisable returns the task that stops a running package — Disable —
// as when the scheduler disabled it because a requirement stopped. It
// returns nil for a package that is not running.
func (m *Manager) PlanDisable(key string) []queue.Task {
	return m.planIf(key, func(e *entry) bool { return e.state.Phase == v1alpha1.PhaseRunning }, kindDisable)
}

func (m *Manager) planIf(key string, ok func(e *entry) bool, kinds ...kind) []queue.Task {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, found := m.pkgs[key]
	if !found || e.rearmed || !ok(e) {
		return nil
	}
	e.gen++
	tasks := make([]queue.Task, len(kinds))
	for i, k := range kinds {
		tasks[i] = &task{m: m, key: key, gen: e.gen, kind: k}
	}
	return tasks
}

// RunTask returns a Run of key within its current plan, for a drift
// monitor that found an object missing: it re-applies the release
// without making earlier tasks stale. ok is false for an unknown package.
func (m *Manager) RunTask(key string) (t queue.Task, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, found := m.pkgs[key]
	if !found {
		return nil, false
	}
	return &task{m: m, key: key, gen: e.gen, kind: kindRun}, true
}

// RecordHookRun notes a finished run of one of key's hooks for status:
// its time, its error (empty after a success), and one more run (and
// failure). It reports whether the hook's error changed (a failure, or
// the first success after one), which is worth a status write at once;
// other runs may be written later, coalesced. A run of a hook the
// package does not have (any more) is ignored.
//
// A run the operator cancelled (err wraps context.Canceled: the package
// was re-planned or removed, or the operator is stopping) is not a run of
// the hook's own making: it is not recorded, so the last real error
// stays, and RecordHookRun reports false.
func (m *Manager) RecordHookRun(key, hook string, finished time.Time, err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pkgs[key]
	if !ok {
		return false
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	for i := range e.state.Hooks {
		if e.state.Hooks[i].Name != hook {
			continue
		}
		// Copy on write: State hands out copies sharing the slice.
		hooks := append([]v1alpha1.HookStatus(nil), e.state.Hooks...)
		h := &hooks[i]
		changed := h.LastError != msg
		t := metav1.NewTime(finished)
		h.LastRunTime, h.LastError = &t, msg
		h.Runs++
		if err != nil {
			h.Failures++
		}
		e.state.Hooks = hooks
		return changed
	}
	return false
}

// RecordDrift notes what a comparison of key's release objects with the
// release's manifest found, for status. It reports whether that differs
// from the last comparison's outcome, which is worth a status write. A
// report for an unknown package (removed meanwhile) is ignored.
func (m *Manager) RecordDrift(key string, d DriftReport) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pkgs[key]
	if !ok {
		return false
	}
	changed := e.state.Drift == nil || *e.state.Drift != d
	e.state.Drift = &d
	return changed
}

// Dependents lists the keys of packages that require key's package.
func (m *Manager) Dependents(key string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pkgs[key]
	if !ok {
		return nil
	}
	var out []string
	for k, o := range m.pkgs {
		if k == key {
			continue
		}
		for _, r := range o.state.Requires {
			if r.Name == e.state.Package {
				out = append(out, k)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// PlanRemove returns the tasks that remove key: Disable, Uninstall;
// for a package known only from its status (Restore), Restore first, which
// loads the installed digest back. It refuses while other packages
// require it, naming them.
func (m *Manager) PlanRemove(key string) ([]queue.Task, error) {
	if d := m.Dependents(key); len(d) > 0 {
		return nil, fmt.Errorf("remove %s: required by %s: remove or change them first", key, strings.Join(d, ", "))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pkgs[key]
	if !ok {
		return nil, nil
	}
	e.gen++
	var tasks []queue.Task
	if e.pkg == nil && e.state.Digest != "" {
		// Known from status only: its hooks (afterDeleteHelm) and custom
		// queues are those of the installed digest.
		tasks = append(tasks, &task{m: m, key: key, gen: e.gen, kind: kindRestore})
	}
	return append(tasks,
		&task{m: m, key: key, gen: e.gen, kind: kindDisable},
		&task{m: m, key: key, gen: e.gen, kind: kindUninstall},
	), nil
}
