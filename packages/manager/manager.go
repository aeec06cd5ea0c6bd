package manager

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	helmchart "helm.sh/helm/v3/pkg/chart"

	"github.com/gadgetpm/gadgetpm/packages/deps"
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
}

// Releaser applies and deletes Helm releases; pkg/nelm implements it.
type Releaser interface {
	Upgrade(ctx context.Context, r Release) (revision int, err error)
	Delete(ctx context.Context, name, namespace string) error
}

// HookRunner runs one binding of one hook; pkg/hooks implements it.
type HookRunner interface {
	RunBinding(ctx context.Context, key string, hook loader.Hook, binding string, values map[string]any) error
}

// Scheduler is told which packages are loaded and running, for
// enablement across the cluster; *scheduler.Scheduler is one.
type Scheduler interface {
	AddPackage(p scheduler.Package) error
	SetState(key string, running bool, version string) error
	RemovePackage(key string)
}

// Options configure a Manager.
type Options struct {
	// Fetcher is required.
	Fetcher Fetcher
	// Releaser applies the chart; nil applies nothing.
	Releaser Releaser
	// Hooks runs hooks; nil runs none.
	Hooks HookRunner
	// Scheduler, when set, gets every loaded package (Load), its running
	// state (Run, Disable) and its removal (Uninstall). Calls are made
	// with no lock held.
	Scheduler Scheduler
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
	// Hooks with their bindings.
	Hooks []v1alpha1.HookStatus
	// Catalog of the gadget.
	Catalog *v1alpha1.Catalog
	// HelmRevision of the release; 0 before the first Run.
	HelmRevision int
	// Requires from Chart.yaml.
	Requires []deps.Requirement
	// Queues are the custom queues the hooks name, sorted.
	Queues []string
	// Dir is the extracted package.
	Dir string
}

type entry struct {
	gp    *v1alpha1.GadgetPackage // latest spec handed to Plan
	state State
	pkg   *loader.Package
	// gen counts Plans; a task from an older plan is stale and does nothing.
	gen int
	// pendingDigest and pendingDir: downloaded and extracted, not loaded yet.
	pendingDigest, pendingDir string
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
//   - new package, or a new version constraint or package name:
//     Download, Install, Load, Startup, Run
//   - settings changed: ApplySettings, Run
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
	e.gp = gp
	var kinds []kind
	switch {
	case prev == nil || prev.Spec.Package != gp.Spec.Package || prev.Spec.Version != gp.Spec.Version || prev.Spec.Repository != gp.Spec.Repository:
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
	}
	if len(kinds) == 0 {
		// Same spec: the tasks already planned (maybe still queued) stay
		// current.
		return nil
	}
	e.gen++
	tasks := make([]queue.Task, len(kinds))
	for i, k := range kinds {
		tasks[i] = &task{m: m, key: key, gen: e.gen, kind: k}
	}
	return tasks
}

// Rearm makes the next Plan of key start over from Download, as after a
// Stalled package is retried.
func (m *Manager) Rearm(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.pkgs[key]; ok {
		e.gp = nil
	}
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

// PlanRemove returns the tasks that remove key: Disable, Uninstall. It
// refuses while other packages require it, naming them.
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
	return []queue.Task{
		&task{m: m, key: key, gen: e.gen, kind: kindDisable},
		&task{m: m, key: key, gen: e.gen, kind: kindUninstall},
	}, nil
}

// graph builds the dependency graph of every loaded package; caller holds
// mu.
func (m *Manager) graph() deps.Graph {
	g := deps.Graph{}
	for _, e := range m.pkgs {
		if e.state.Phase == v1alpha1.PhasePending {
			continue
		}
		g[e.state.Package] = deps.Node{Name: e.state.Package, Version: e.state.Version, Requires: e.state.Requires}
	}
	return g
}

// enablement decides whether key may run; caller holds mu.
func (m *Manager) enablement(e *entry) (bool, string) {
	if !e.gp.Spec.IsEnabled() {
		return false, "spec.enabled is false"
	}
	g := m.graph()
	if _, err := g.Order(); err != nil {
		var ce *deps.CycleError
		if errors.As(err, &ce) {
			for _, n := range ce.Cycle {
				if n == e.state.Package {
					return false, err.Error()
				}
			}
		}
	}
	if unmet := g.Unmet(e.state.Package); len(unmet) > 0 {
		return false, strings.Join(unmet, "; ")
	}
	return true, ""
}
