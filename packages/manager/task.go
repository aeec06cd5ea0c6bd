package manager

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	helmchartutil "helm.sh/helm/v3/pkg/chartutil"

	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler"
)

type kind string

// Task names, as the queue dump shows them.
const (
	kindDownload      kind = "download"
	kindInstall       kind = "install"
	kindLoad          kind = "load"
	kindApplySettings kind = "apply-settings"
	kindStartup       kind = "startup"
	kindRun           kind = "run"
	kindStart         kind = "start"
	kindDisable       kind = "disable"
	kindUninstall     kind = "uninstall"
	kindRestore       kind = "restore"
)

// task is one lifecycle step of one package.
type task struct {
	m    *Manager
	key  string
	gen  int
	kind kind
}

var _ queue.Task = (*task)(nil)

func (t *task) Name() string { return string(t.kind) + " " + t.key }

// snapshot is what a task reads of its package, copied under the lock.
type snapshot struct {
	gp                        *v1alpha1.GadgetPackage
	state                     State
	pkg                       *loader.Package
	pendingDigest, pendingDir string
}

// begin copies the package's state, or reports the task stale.
func (t *task) begin() (snapshot, bool) {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	e, ok := t.m.pkgs[t.key]
	if !ok || e.gen != t.gen {
		return snapshot{}, false
	}
	return snapshot{gp: e.gp, state: e.state, pkg: e.pkg, pendingDigest: e.pendingDigest, pendingDir: e.pendingDir}, true
}

// commit applies f to the package unless the task went stale meanwhile.
func (t *task) commit(f func(e *entry)) {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if e, ok := t.m.pkgs[t.key]; ok && e.gen == t.gen {
		f(e)
	}
}

// Execute runs the step. A stale task (its package was re-planned or
// removed) does nothing.
func (t *task) Execute(ctx context.Context) error {
	s, ok := t.begin()
	if !ok {
		return nil
	}
	switch t.kind {
	case kindDownload:
		return t.download(ctx, s)
	case kindInstall:
		return t.install(ctx, s)
	case kindLoad:
		return t.load(ctx, s)
	case kindApplySettings:
		return t.applySettings(s)
	case kindStartup:
		return t.startup(ctx, s)
	case kindRun:
		return t.run(ctx, s)
	case kindStart:
		return t.start(ctx, s)
	case kindDisable:
		return t.disable(s)
	case kindUninstall:
		return t.uninstall(ctx, s)
	case kindRestore:
		return t.restore(ctx, s)
	}
	return queue.Terminal(fmt.Errorf("unknown task %q", t.kind))
}

func (t *task) download(ctx context.Context, s snapshot) error {
	gp := s.gp.DeepCopy()
	gp.Status.Digest, gp.Status.Version = s.state.Digest, s.state.Version
	d, err := t.m.opts.Fetcher.Download(ctx, gp)
	t.commit(func(e *entry) {
		if d.Version != "" {
			e.state.LastAttemptedVersion = d.Version
		}
		if err == nil {
			e.pendingDigest = d.Digest
		}
	})
	return err
}

// install extracts what its plan's Download got; without that (the
// download was given up on, or the steps ran out of order) it fails at
// once rather than extract an earlier plan's archive or none.
func (t *task) install(ctx context.Context, s snapshot) error {
	if s.pendingDigest == "" {
		return queue.Terminal(&fetch.Error{Reason: v1alpha1.ReasonInstallFailed,
			Err: fmt.Errorf("install %s: no archive downloaded by this plan: its download did not succeed", t.key)})
	}
	dir, err := t.m.opts.Fetcher.Install(ctx, s.pendingDigest)
	if err != nil {
		return err
	}
	t.commit(func(e *entry) { e.pendingDir = dir })
	return nil
}

// load loads what its plan's Install extracted; without that it fails at
// once, as install does.
func (t *task) load(ctx context.Context, s snapshot) error {
	dir, digest := s.pendingDir, s.pendingDigest
	if dir == "" {
		return queue.Terminal(&fetch.Error{Reason: v1alpha1.ReasonLoadFailed,
			Err: fmt.Errorf("load %s: nothing installed by this plan: its install did not succeed", t.key)})
	}
	p, err := t.m.opts.Fetcher.Load(ctx, dir, s.gp)
	if err != nil {
		return terminalIfFixed(err)
	}
	values, err := values(p, s.gp)
	if err != nil {
		return terminalIfFixed(err)
	}
	if h := t.m.opts.Hooks; h != nil {
		if err := h.Prepare(ctx, t.key, p, s.gp); err != nil {
			return &fetch.Error{Reason: v1alpha1.ReasonLoadFailed, Err: fmt.Errorf("prepare hooks of %s: %w", t.key, err)}
		}
	}
	t.setStarted(false) // Prepare replaced the hooks: they start again
	t.commit(func(e *entry) {
		e.pkg = p
		st := &e.state
		// The same digest loaded again (after a restart) keeps its hooks'
		// run counts and last errors.
		prev := map[string]v1alpha1.HookStatus{}
		if st.Digest == digest {
			for _, h := range st.Hooks {
				prev[h.Name] = h
			}
		}
		st.Version, st.Digest, st.Dir, st.Values, st.Catalog = p.Version, digest, dir, values, p.Catalog
		st.SecretValues = p.SecretValues
		st.Hooks, st.Queues = nil, queuesOf(p)
		for _, h := range p.Hooks {
			hs := prev[h.Name]
			hs.Name, hs.Bindings = h.Name, h.Bindings
			st.Hooks = append(st.Hooks, hs)
		}
		st.Requires = nil
		for _, r := range p.Requirements.Requires {
			st.Requires = append(st.Requires, scheduler.Requirement{Name: r.Name, Constraint: r.Constraint})
		}
		if st.Phase == v1alpha1.PhasePending {
			st.Phase = v1alpha1.PhaseLoaded
		}
	})
	if err := t.register(s.gp, p); err != nil {
		return err
	}
	t.enabled()
	return nil
}

// register tells the scheduler about the loaded package p with gp's
// spec.enabled; AddPackage replaces what it knew.
func (t *task) register(gp *v1alpha1.GadgetPackage, p *loader.Package) error {
	sch := t.m.opts.Scheduler
	if p == nil {
		return nil
	}
	sp := scheduler.Package{Key: t.key, Name: p.Name, Version: p.Version, Enabled: gp.Spec.IsEnabled(),
		KubeVersion: p.Requirements.KubeVersion, Order: p.Requirements.Order}
	for _, r := range p.Requirements.Requires {
		sp.Requires = append(sp.Requires, scheduler.Requirement{Name: r.Name, Constraint: r.Constraint})
	}
	if err := sch.AddPackage(sp); err != nil {
		return queue.Terminal(fmt.Errorf("register %s with the scheduler: %w", t.key, err))
	}
	return nil
}

func values(p *loader.Package, gp *v1alpha1.GadgetPackage) (map[string]any, error) {
	settings, err := fetch.Settings(gp)
	if err != nil {
		return nil, &fetch.Error{Reason: v1alpha1.ReasonInvalidSettings, Err: err}
	}
	if err := loader.ValidateSettings(p, settings); err != nil {
		return nil, &fetch.Error{Reason: v1alpha1.ReasonInvalidSettings, Err: fmt.Errorf("spec.settings: %w", err)}
	}
	v, err := helmchartutil.CoalesceValues(p.Chart, settings)
	if err != nil {
		return nil, &fetch.Error{Reason: v1alpha1.ReasonInvalidSettings, Err: err}
	}
	return v.AsMap(), nil
}

func (t *task) applySettings(s snapshot) error {
	if s.pkg == nil {
		return fmt.Errorf("apply settings of %s: the package is not loaded", t.key)
	}
	v, err := values(s.pkg, s.gp)
	if err != nil {
		return terminalIfFixed(err)
	}
	if h := t.m.opts.Hooks; h != nil {
		if err := h.SetSettings(t.key, s.gp); err != nil {
			return terminalIfFixed(&fetch.Error{Reason: v1alpha1.ReasonInvalidSettings, Err: err})
		}
	}
	t.commit(func(e *entry) { e.state.Values = v })
	return nil
}

// runHooks runs binding of every hook declaring it.
func (t *task) runHooks(ctx context.Context, s snapshot, binding string) error {
	h := t.m.opts.Hooks
	if s.pkg == nil || h == nil {
		return nil
	}
	if err := h.RunBinding(ctx, t.key, binding); err != nil {
		return stepFailed(v1alpha1.ReasonHookFailed, fmt.Errorf("%s hooks of %s: %w", binding, t.key, err))
	}
	return nil
}

// enabled reads the scheduler's enablement now: other packages may have
// loaded since. The scheduler is asked with no lock held.
func (t *task) enabled() bool {
	st, ok := t.m.opts.Scheduler.Status(t.key)
	on, reason := st.Enabled, st.Reason
	if !ok {
		on, reason = false, "not evaluated yet"
	}
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	e, found := t.m.pkgs[t.key]
	if !found {
		return false
	}
	e.state.Enabled, e.state.Reason = on, reason
	return on
}

// startup creates the chart's CRDs, runs the onStartup hooks, then
// enables the package's kubernetes and schedule bindings — once per loaded
// version and enablement, however many plans ask for it. onStartup hooks
// that ran are not run again when enabling the bindings failed or was
// cancelled.
func (t *task) startup(ctx context.Context, s snapshot) error {
	if err := t.register(s.gp, s.pkg); err != nil {
		return err
	}
	if s.pkg == nil || !t.enabled() || t.started() {
		return nil
	}
	if err := t.installCRDs(ctx, s); err != nil {
		return err
	}
	if !t.onStartupDone() {
		if err := t.runHooks(ctx, s, "onStartup"); err != nil {
			return err
		}
		t.m.mu.Lock()
		if e, ok := t.m.pkgs[t.key]; ok {
			e.onStartupDone = true
		}
		t.m.mu.Unlock()
	}
	if h := t.m.opts.Hooks; h != nil {
		if err := h.Enable(ctx, t.key); err != nil {
			return stepFailed(v1alpha1.ReasonHookFailed, fmt.Errorf("enable bindings of %s: %w", t.key, err))
		}
	}
	t.setStarted(true)
	return nil
}

// CRDInstaller is a Releaser that also creates the CustomResourceDefinitions
// of a chart's crds/ folder ahead of its release, as Helm does on install:
// those missing are created, none is updated or deleted. Startup asks for
// it before any hook runs, so that hooks (onStartup, kubernetes bindings'
// Synchronization, beforeHelm) can watch and create the package's own
// kinds. pkg/nelm implements it; a Releaser without it leaves crds/ to
// Helm's install.
type CRDInstaller interface {
	InstallCRDs(ctx context.Context, r Release) error
}

// installCRDs creates the chart's CRDs when the Releaser can.
func (t *task) installCRDs(ctx context.Context, s snapshot) error {
	ci, ok := t.m.opts.Releaser.(CRDInstaller)
	if !ok || s.pkg.Chart == nil {
		return nil
	}
	rel := t.m.releaseOf(s.gp)
	rel.Chart = s.pkg.Chart
	if err := ci.InstallCRDs(ctx, rel); err != nil {
		return stepFailed(v1alpha1.ReasonInstallFailed, fmt.Errorf("install CRDs of %s: %w", t.key, err))
	}
	return nil
}

func (t *task) started() bool {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	e, ok := t.m.pkgs[t.key]
	return ok && e.started
}

func (t *task) onStartupDone() bool {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	e, ok := t.m.pkgs[t.key]
	return ok && e.onStartupDone
}

// setStarted records what happened to the package's hooks, whichever plan
// the task belongs to. Stopping them (false) also means the next start
// runs the onStartup hooks again.
func (t *task) setStarted(v bool) {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if e, ok := t.m.pkgs[t.key]; ok {
		e.started = v
		if !v {
			e.onStartupDone = false
		}
	}
}

// start is Startup and Run for a package the scheduler enabled; it does
// nothing when the package already runs.
func (t *task) start(ctx context.Context, s snapshot) error {
	if s.state.Phase == v1alpha1.PhaseRunning && t.started() {
		return nil
	}
	return t.run(ctx, s)
}

// currentValues are the values the chart gets: the hook runner's (with
// hooks' patches) when there is one.
func (t *task) currentValues(s snapshot) (map[string]any, error) {
	if h := t.m.opts.Hooks; h != nil {
		v, err := h.Values(t.key)
		if err != nil {
			return nil, fmt.Errorf("values of %s: %w", t.key, err)
		}
		return v, nil
	}
	return s.state.Values, nil
}

func (t *task) run(ctx context.Context, s snapshot) error {
	if s.pkg == nil {
		return fmt.Errorf("run %s: the package is not loaded", t.key)
	}
	if !t.enabled() {
		return nil
	}
	// Enabled after its plan's Startup passed (a requirement began to run
	// in between): start it now, in order.
	if err := t.startup(ctx, s); err != nil {
		return err
	}
	if err := t.runHooks(ctx, s, "beforeHelm"); err != nil {
		return err
	}
	vals, err := t.currentValues(s)
	if err != nil {
		return err
	}
	rev, err := t.upgrade(ctx, s, vals, s.state.HelmRevision)
	if err != nil {
		return err
	}
	if err := t.runHooks(ctx, s, "afterHelm"); err != nil {
		return err
	}
	// afterHelm hooks may patch values; the chart gets them at once.
	after, err := t.currentValues(s)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(after, vals) {
		if rev, err = t.upgrade(ctx, s, after, rev); err != nil {
			return err
		}
		vals = after
	}
	t.commit(func(e *entry) {
		e.state.Phase = v1alpha1.PhaseRunning
		e.state.HelmRevision = rev
		e.state.Values = vals
	})
	if err := t.m.opts.Scheduler.SetState(t.key, true, s.pkg.Version); err != nil {
		return fmt.Errorf("tell the scheduler %s runs: %w", t.key, err)
	}
	return nil
}

func (t *task) upgrade(ctx context.Context, s snapshot, vals map[string]any, rev int) (int, error) {
	r := t.m.opts.Releaser
	if r == nil {
		return rev, nil
	}
	rel := t.m.releaseOf(s.gp)
	rel.Chart, rel.Values = s.pkg.Chart, vals
	rev, err := r.Upgrade(ctx, rel)
	if err != nil {
		// The Releaser may name the reason (a failed remediation).
		return 0, stepFailed(fetch.ReasonOf(err, v1alpha1.ReasonInstallFailed), fmt.Errorf("upgrade release %s/%s: %w", s.gp.Namespace, ReleaseName(s.gp), err))
	}
	return rev, nil
}

// disable stops the package's bindings; its release stays.
func (t *task) disable(s snapshot) error {
	if h := t.m.opts.Hooks; h != nil && s.pkg != nil {
		h.Disable(t.key)
	}
	t.setStarted(false)
	if err := t.register(s.gp, s.pkg); err != nil {
		return err
	}
	t.commit(func(e *entry) {
		if e.state.Phase == v1alpha1.PhaseRunning {
			e.state.Phase = v1alpha1.PhaseLoaded
		}
	})
	t.enabled()
	if s.pkg != nil {
		if err := t.m.opts.Scheduler.SetState(t.key, false, ""); err != nil {
			return fmt.Errorf("tell the scheduler %s stopped: %w", t.key, err)
		}
	}
	return nil
}

// restore loads back the package a restored state names (its status's
// digest), so that its removal runs its hooks and clears its queues: from
// the store, else from the repository at the installed version. When
// neither has it, it fails for good with what was skipped and how to
// finish by hand.
func (t *task) restore(ctx context.Context, s snapshot) error {
	if s.pkg != nil {
		return nil
	}
	digest := s.state.Digest
	dir, err := t.m.opts.Fetcher.Install(ctx, digest)
	if err != nil {
		pinned := s.gp.DeepCopy()
		pinned.Spec.Version = s.state.Version
		d, derr := t.m.opts.Fetcher.Download(ctx, pinned)
		if derr == nil {
			digest = d.Digest
			dir, derr = t.m.opts.Fetcher.Install(ctx, d.Digest)
		}
		if derr != nil {
			return queue.Terminal(&fetch.Error{Reason: v1alpha1.ReasonRestoreFailed, Err: fmt.Errorf(
				"restore %s: version %s (digest %s) that status says is installed is neither in the package store (%v) nor in PackageRepository %s (%v): "+
					"its afterDeleteHelm hooks cannot run and its Helm release %s/%s was left in place; uninstall the release "+
					"(helm uninstall -n %s %s), then remove the finalizer %s from the GadgetPackage by hand, or make the version available again and set the annotation %s",
				t.key, s.state.Version, s.state.Digest, err, s.gp.Spec.Repository, derr, s.gp.Namespace, ReleaseName(s.gp),
				s.gp.Namespace, ReleaseName(s.gp), v1alpha1.PackageFinalizer, v1alpha1.RetryAnnotation)})
		}
	}
	p, err := t.m.opts.Fetcher.Load(ctx, dir, s.gp)
	if err != nil {
		return queue.Terminal(&fetch.Error{Reason: v1alpha1.ReasonRestoreFailed, Err: fmt.Errorf("restore %s: %w", t.key, err)})
	}
	if h := t.m.opts.Hooks; h != nil {
		if err := h.Prepare(ctx, t.key, p, s.gp); err != nil {
			return &fetch.Error{Reason: v1alpha1.ReasonRestoreFailed, Err: fmt.Errorf("restore %s: prepare hooks: %w", t.key, err)}
		}
	}
	t.commit(func(e *entry) {
		e.pkg = p
		e.state.Dir, e.state.Digest, e.state.Queues = dir, digest, queuesOf(p)
	})
	return nil
}

// queuesOf lists the custom queues p's hooks name, sorted, once each.
func queuesOf(p *loader.Package) []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range p.Hooks {
		for _, q := range h.Queues {
			if !seen[q] {
				seen[q] = true
				out = append(out, q)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (t *task) uninstall(ctx context.Context, s snapshot) error {
	h := t.m.opts.Hooks // the Disable before this stopped its bindings
	if err := t.waitUnsubscribed(ctx, s); err != nil {
		return err
	}
	if r := t.m.opts.Releaser; r != nil && s.state.HelmRevision > 0 {
		if err := r.Delete(ctx, t.m.releaseOf(s.gp)); err != nil {
			return stepFailed(v1alpha1.ReasonInstallFailed, fmt.Errorf("delete release %s/%s: %w", s.gp.Namespace, ReleaseName(s.gp), err))
		}
	}
	if err := t.runHooks(ctx, s, "afterDeleteHelm"); err != nil {
		return err
	}
	if h != nil {
		h.Forget(t.key)
	}
	t.m.mu.Lock()
	if e, ok := t.m.pkgs[t.key]; ok && e.gen == t.gen {
		delete(t.m.pkgs, t.key)
	}
	t.m.mu.Unlock()
	t.m.opts.Scheduler.RemovePackage(t.key)
	return nil
}

// ReleaseName is the Helm release of a GadgetPackage: its name, in its
// namespace.
func ReleaseName(gp *v1alpha1.GadgetPackage) string { return gp.Name }

// releaseOf names gp's release and carries its adopt-release annotation
// and the ServiceAccount it acts as.
func (m *Manager) releaseOf(gp *v1alpha1.GadgetPackage) Release {
	_, sa, _ := identity.ServiceAccount(gp, m.opts.DefaultServiceAccount)
	rel := Release{Name: ReleaseName(gp), Namespace: gp.Namespace,
		AdoptRelease:   gp.Annotations[v1alpha1.AdoptReleaseAnnotation] == "true",
		ServiceAccount: sa, DriftDetection: gp.Spec.DriftDetection}
	if gp.Spec.Install != nil {
		rel.InstallRemediation = gp.Spec.Install.Remediation
	}
	if gp.Spec.Upgrade != nil {
		rel.UpgradeRemediation = gp.Spec.Upgrade.Remediation
	}
	return rel
}

// AppliesRelease reports whether the task installs or upgrades the
// package's Helm release, so that the controller gives it the attempts of
// spec.install.remediation.retries or spec.upgrade.remediation.retries.
func (t *task) AppliesRelease() bool { return t.kind == kindRun || t.kind == kindStart }

// stepFailed gives a failed step's error its condition reason: the
// package's identity refused or missing (pkg/identity) whatever the step,
// since that is what the user must fix, else reason.
func stepFailed(reason string, err error) *fetch.Error {
	if r := identity.Reason(err); r != "" {
		reason = r
	}
	return &fetch.Error{Reason: reason, Err: err}
}

// terminalIfFixed marks errors that retrying cannot cure — the package's
// content or the spec's settings are wrong — as terminal, so the package
// is Stalled at once instead of after every attempt.
func terminalIfFixed(err error) error {
	switch fetch.ReasonOf(err, "") {
	case v1alpha1.ReasonLoadFailed, v1alpha1.ReasonInvalidSettings:
		return queue.Terminal(err)
	}
	return err
}
