package hookhost

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// KubeEvents is the Kubernetes event monitors as the host uses them: it
// registers, starts and stops the monitors of kubernetes bindings and
// reads their state and snapshots. *kubeevents.Monitors is one.
type KubeEvents interface {
	AddMonitor(ctx context.Context, cfg kubeevents.Config) error
	StartMonitor(id string) error
	StopMonitor(id string) error
	RemoveMonitor(id string) error
	// Synced is true once the monitor listed its objects.
	Synced(id string) bool
	// WaitingForKind says why the monitor waits for its kind; "" while
	// it watches.
	WaitingForKind(id string) string
	// Forbidden is the API server's refusal of the monitor's list or
	// watch to its identity while it lasts (a *kubeevents.ForbiddenError);
	// nil otherwise.
	Forbidden(id string) error
	Snapshot(id string) []kubeevents.ObjectAndFilterResult
}

// Schedules holds the cron entries of schedule bindings, keyed by owner
// (the package key). *cron.Crontab is one.
type Schedules interface {
	Add(owner, name, spec string) error
	RemoveOwner(owner string)
	// Done lets the entry fire again.
	Done(t cron.Trigger)
}

// Queues runs the hook-run tasks bindings make. *queue.Service is one.
type Queues interface {
	Enqueue(name string, t queue.Task, opts ...queue.EnqueueOption) error
}

// ReleasePauser pauses a package's Helm drift monitor while its hooks run,
// so that their own changes raise no alarm. *nelm.Service is one.
type ReleasePauser interface {
	Pause(pkg nelm.Package)
	Resume(pkg nelm.Package)
}

// PackagePatcher gives the object patcher of one package: the namespace
// its namespaced objects default to and the identity it acts as.
type PackagePatcher interface {
	ForPackage(gp *v1alpha1.GadgetPackage) (hooks.ObjectPatcher, error)
}

// AccountCredentials returns the hook credentials of service account
// namespace/name, which acts for owner ("GadgetPackage <ns>/<name>",
// named in its errors). hookcreds.Accounts.Issuer is one.
type AccountCredentials func(namespace, name, owner string) (hooks.Credentials, error)

// Options configure New. Every field without a default is required,
// except Metrics, Observer, Recorder, DefaultServiceAccount and
// AccountCredentials.
type Options struct {
	// Runner executes hooks (pkg/hooks' own runner: the hook-run task
	// takes no other).
	Runner *hooks.Runner
	// KubeEvents runs kubernetes bindings' monitors.
	KubeEvents KubeEvents
	// Patcher applies hooks' object patches. When it is also a
	// PackagePatcher, each package's patches go through its ForPackage.
	Patcher hooks.ObjectPatcher
	// Schedules runs schedule bindings.
	Schedules Schedules
	// Queues runs hook-run tasks.
	Queues Queues
	// Releases pauses a package's drift monitor while its hooks run.
	Releases ReleasePauser
	// Mapper resolves bindings' kinds; share the process's mapper. It
	// must refresh itself on a miss (restmapping.Mapper does), since a
	// package's kinds may be defined after it was made.
	Mapper meta.RESTMapper
	// Client writes hooks' settings patches into their GadgetPackage.
	Client client.Client
	// Env is what every hook's environment holds besides the protocol's
	// paths.
	Env hooks.Env
	// MaxAttempts of a binding's hook run before its queue gives up; 0
	// means the queue service's default.
	MaxAttempts int
	// Metrics exports hooks' metrics; nil exports none.
	Metrics *hooks.Metrics
	// Observer hears of every finished run the host records (not of runs
	// the operator cancelled itself); nil hears nothing. It is called with
	// no lock held.
	Observer hooks.RunObserver
	// Recorder records Events on GadgetPackages; nil records none.
	Recorder record.EventRecorder
	// DefaultServiceAccount is the service account, in a package's
	// namespace, a package without spec.serviceAccountName acts as
	// (pkg/identity); empty: such a package acts as the operator.
	DefaultServiceAccount string
	// AccountCredentials give the hooks of a package that acts as a
	// service account that account's tokens; its kubernetes bindings list
	// and watch as it. Nil: preparing such a package fails, naming it.
	AccountCredentials AccountCredentials
	// MaxPendingEventsPerBinding caps the objects whose kube events one
	// binding keeps pending while its hook's run waits; beyond it they
	// become one re-Synchronization (see pending.go). Default
	// DefaultMaxPendingEventsPerBinding; negative: no cap.
	MaxPendingEventsPerBinding int
	// MaxBindingContextsPerRun caps the binding contexts of one hook run,
	// merged or compacted; more go to the next run. Default
	// DefaultMaxBindingContextsPerRun; negative: no cap.
	MaxBindingContextsPerRun int
	// Logger; default a discarding one. Hooks' runs log under its
	// "hooks" child.
	Logger logr.Logger
}

// Host hosts the hooks of every prepared package: their values stores,
// kubernetes monitors and cron entries, and the hook-run tasks their
// bindings make. It implements manager.HookRunner and hooks.RunObserver;
// the event loop hands it cron triggers (OnSchedule), kube events
// (OnKubeEvent) and queue events (OnQueueEvent). It starts no goroutine;
// every method is safe for concurrent use.
type Host struct {
	opts Options
	log  logr.Logger

	mu sync.Mutex
	// pkgs holds every prepared package's hooks; guarded by mu.
	pkgs map[string]*pkgHooks
	// monitors maps kubernetes monitor IDs to their package; guarded by mu.
	monitors map[string]string

	// pendMu guards the open runs of kube events (pending.go): chains and
	// every open runTask's gathering and run. Never held with mu.
	pendMu sync.Mutex
	// chains by queue and hook; guarded by pendMu.
	chains map[chainKey]*chain
}

var (
	_ manager.HookRunner = (*Host)(nil)
	_ hooks.RunObserver  = (*Host)(nil)
)

// New checks opts and returns a host with no package.
func New(opts Options) (*Host, error) {
	var missing []string
	for _, f := range []struct {
		name  string
		unset bool
	}{
		{"Runner", opts.Runner == nil}, {"KubeEvents", opts.KubeEvents == nil}, {"Patcher", opts.Patcher == nil},
		{"Schedules", opts.Schedules == nil}, {"Queues", opts.Queues == nil}, {"Releases", opts.Releases == nil},
		{"Mapper", opts.Mapper == nil}, {"Client", opts.Client == nil},
	} {
		if f.unset {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("create hook host: Options.%s required, not set", strings.Join(missing, ", Options."))
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	if opts.MaxPendingEventsPerBinding == 0 {
		opts.MaxPendingEventsPerBinding = DefaultMaxPendingEventsPerBinding
	}
	if opts.MaxBindingContextsPerRun == 0 {
		opts.MaxBindingContextsPerRun = DefaultMaxBindingContextsPerRun
	}
	return &Host{opts: opts, log: opts.Logger, pkgs: map[string]*pkgHooks{}, monitors: map[string]string{}, chains: map[chainKey]*chain{}}, nil
}

// pkgHooks is one package's hooks, values and bindings.
type pkgHooks struct {
	key       string
	namespace string
	name      string
	// account is the service account the package acts as; nil: the
	// operator.
	account  *kubeevents.ServiceAccount
	hooks    []*hooks.Hook
	values   *hooks.ValuesStore
	patcher  hooks.ObjectPatcher
	monitors []monitorRef
	// schedules by cron entry name.
	schedules map[string]scheduleRef

	mu sync.Mutex
	// enabled: bindings may turn events into runs; guarded by mu.
	enabled bool
	// waits are the Synchronization runs Enable waits for, by monitor ID;
	// guarded by mu.
	waits map[string]*syncWait
	// runs by hook name, for the dump; guarded by mu.
	runs map[string]*hookRuns
}

// release names the package's Helm release for pausing its drift monitor.
func (ph *pkgHooks) release() nelm.Package {
	return nelm.Package{Namespace: ph.namespace, Name: ph.name}
}

type monitorRef struct {
	id      string
	hook    *hooks.Hook
	binding *hooks.KubernetesBinding
}

type scheduleRef struct {
	hook    *hooks.Hook
	binding *hooks.ScheduleBinding
	// index of the binding in the hook's schedules: bindings may share a
	// name.
	index int
}

type hookRuns struct {
	count   int
	last    time.Time
	lastErr string
}

// syncWait is one Synchronization run that the package's start waits for.
type syncWait struct {
	// run: the binding runs its hook on Synchronization; otherwise the
	// monitor having listed its objects is enough.
	run  bool
	done chan struct{}
	err  error // set before done is closed
}

func (w *syncWait) finish(err error) {
	select {
	case <-w.done:
	default:
		w.err = err
		close(w.done)
	}
}

func (h *Host) pkg(key string) (*pkgHooks, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.pkgs[key]
	if !ok {
		return nil, fmt.Errorf("package %s has no hooks prepared", key)
	}
	return p, nil
}

func (h *Host) taskDeps(ph *pkgHooks) hooks.TaskDeps {
	return hooks.TaskDeps{Runner: h.opts.Runner, Snapshots: h.opts.KubeEvents, Patcher: ph.patcher, Metrics: h.opts.Metrics,
		Observer: h, Logger: h.log.WithName("hooks")}
}

// Prepare builds the package's hooks from the configs the loader kept,
// its values store, and registers its kubernetes monitors (stopped). A
// package prepared before (an upgrade) is forgotten first.
func (h *Host) Prepare(ctx context.Context, key string, p *loader.Package, gp *v1alpha1.GadgetPackage) error {
	h.Forget(key)
	settings, err := fetch.Settings(gp)
	if err != nil {
		return err
	}
	vs, err := hooks.NewValuesStore(hooks.ValuesStoreOptions{
		Package: p.Name, Schema: p.Chart.Schema, Defaults: p.Chart.Values, Settings: settings,
		Writer: hooks.GadgetPackageSettings{Client: h.opts.Client, Key: types.NamespacedName{Namespace: gp.Namespace, Name: gp.Name}},
	})
	if err != nil {
		return fmt.Errorf("values of %s: %w", key, err)
	}
	patcher := h.opts.Patcher
	if pp, ok := patcher.(PackagePatcher); ok {
		if patcher, err = pp.ForPackage(gp); err != nil {
			return fmt.Errorf("object patcher of %s: %w", key, err)
		}
	}
	ph := &pkgHooks{key: key, namespace: gp.Namespace, name: gp.Name, values: vs, patcher: patcher,
		schedules: map[string]scheduleRef{}, waits: map[string]*syncWait{}, runs: map[string]*hookRuns{}}
	creds, err := h.accountCredentials(ph, gp)
	if err != nil {
		return err
	}
	for _, lh := range p.Hooks {
		hk, err := hooks.FromConfig(p.Dir, lh.Name, lh.Config, hooks.LoadOptions{Package: p.Name, PackageKey: key, Env: h.opts.Env})
		if err != nil {
			return err
		}
		// A kind whose API group is not served at all may be defined later
		// (by the chart's crds/, created before the hooks start, or by
		// someone else): its binding waits for it rather than failing the
		// load. A wrong version or a misspelled kind is still an error.
		if err := hk.Config.ResolveKindsLater(hk.Name, h.opts.Mapper); err != nil {
			return err
		}
		for _, b := range hk.Config.Kubernetes {
			if b.KindNotServed != "" {
				h.log.Info("kind not served yet; the binding will wait for it", "package", key, "hook", hk.Name, "binding", b.Name,
					"apiVersion", b.Monitor.APIVersion, "kind", b.Monitor.Kind, "reason", b.KindNotServed)
			}
		}
		hk.Credentials = creds
		ph.hooks = append(ph.hooks, hk)
		for i := range hk.Config.Kubernetes {
			b := &hk.Config.Kubernetes[i]
			b.Monitor.ServiceAccount = ph.account
			ph.monitors = append(ph.monitors, monitorRef{id: b.Monitor.ID, hook: hk, binding: b})
		}
		for i := range hk.Config.Schedules {
			b := &hk.Config.Schedules[i]
			ph.schedules[hk.Name+"#schedule["+strconv.Itoa(i)+"]"] = scheduleRef{hook: hk, binding: b, index: i}
		}
	}
	var added []string
	for _, m := range ph.monitors {
		if err := h.opts.KubeEvents.AddMonitor(ctx, m.binding.Monitor); err != nil {
			for _, id := range added {
				_ = h.opts.KubeEvents.RemoveMonitor(id)
			}
			return fmt.Errorf("hook %s binding %s: %w", m.hook.Name, m.binding.Name, err)
		}
		added = append(added, m.id)
	}
	h.mu.Lock()
	h.pkgs[key] = ph
	for _, id := range added {
		h.monitors[id] = key
	}
	h.mu.Unlock()
	return nil
}

// accountCredentials sets the service account the package acts as and
// returns its hooks' credentials; nil, nil when it acts as the operator.
func (h *Host) accountCredentials(ph *pkgHooks, gp *v1alpha1.GadgetPackage) (hooks.Credentials, error) {
	ns, name, ok := identity.ServiceAccount(gp, h.opts.DefaultServiceAccount)
	if !ok {
		return nil, nil
	}
	owner := "GadgetPackage " + gp.Namespace + "/" + gp.Name
	if h.opts.AccountCredentials == nil {
		return nil, fmt.Errorf("%s acts as service account %s/%s, but this operator cannot give hooks a service account's credentials", owner, ns, name)
	}
	creds, err := h.opts.AccountCredentials(ns, name, owner)
	if err != nil {
		return nil, fmt.Errorf("credentials of service account %s/%s for the hooks of %s: %w", ns, name, owner, err)
	}
	ph.account = &kubeevents.ServiceAccount{Namespace: ns, Name: name}
	return creds, nil
}

// SetSettings replaces the package's settings in its values store.
func (h *Host) SetSettings(key string, gp *v1alpha1.GadgetPackage) error {
	ph, err := h.pkg(key)
	if err != nil {
		return err
	}
	settings, err := fetch.Settings(gp)
	if err != nil {
		return err
	}
	return ph.values.SetSettings(settings)
}

// RunBinding runs the hooks declaring binding, in order, inside the
// calling task; the release's drift monitor is paused meanwhile so the
// hooks' own changes raise no alarm.
func (h *Host) RunBinding(ctx context.Context, key, binding string) error {
	ph, err := h.pkg(key)
	if err != nil {
		return err
	}
	bt := hooks.BindingType(binding)
	h.opts.Releases.Pause(ph.release())
	defer h.opts.Releases.Resume(ph.release())
	// The calling task is one of the package's lifecycle tasks, in its
	// main queue.
	q := queue.PackageQueueName(key, "")
	for _, hk := range hooks.Ordered(ph.hooks, bt) {
		if err := hooks.NewRunTask(h.taskDeps(ph), hk, ph.values, hooks.Trigger{Type: bt}).InQueue(q).Execute(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Enable (re)starts the package's monitors, waits until every binding with
// waitForSynchronization had its Synchronization run (in the package's
// synchronization queue) or listed its objects (and, for a package that
// acts as a service account, every other binding listed its objects),
// then adds its schedules. A binding the API server refuses fails it.
func (h *Host) Enable(ctx context.Context, key string) error {
	ph, err := h.pkg(key)
	if err != nil {
		return err
	}
	ph.mu.Lock()
	ph.enabled = true
	for _, w := range ph.waits {
		w.finish(errors.New("restarted"))
	}
	ph.waits = map[string]*syncWait{}
	for _, m := range ph.monitors {
		if m.binding.WaitForSynchronization {
			ph.waits[m.id] = &syncWait{run: m.binding.Monitor.ExecuteHookOnSynchronization, done: make(chan struct{})}
		}
	}
	waits := make(map[string]*syncWait, len(ph.waits))
	for id, w := range ph.waits {
		waits[id] = w
	}
	ph.mu.Unlock()

	for _, m := range ph.monitors {
		if err := h.opts.KubeEvents.StopMonitor(m.id); err != nil && !errors.Is(err, kubeevents.ErrMonitorNotFound) {
			return fmt.Errorf("restart monitor %s: %w", m.id, err)
		}
		if err := h.opts.KubeEvents.StartMonitor(m.id); err != nil {
			return fmt.Errorf("start monitor %s: %w", m.id, err)
		}
	}
	for _, m := range ph.monitors {
		w, ok := waits[m.id]
		if !ok && ph.account == nil {
			continue
		}
		if !ok {
			// The package's account may be refused what the binding
			// watches: its list (not its Synchronization run) is waited
			// for too, so that a refusal fails the start.
			w = &syncWait{done: make(chan struct{})}
		}
		if err := h.waitSync(ctx, ph, m, w); err != nil {
			return err
		}
	}
	for name, s := range ph.schedules {
		if err := h.opts.Schedules.Add(key, name, s.binding.Crontab); err != nil {
			return fmt.Errorf("hook %s schedule %s: %w", s.hook.Name, s.binding.Name, err)
		}
	}
	return nil
}

// syncPoll is how often waitSync reads a monitor's state. The events
// manager announces neither a finished list nor a kind found missing, so
// both are read; a Synchronization run's end is heard at once.
const syncPoll = 50 * time.Millisecond

// waitSync waits for one binding's Synchronization run (or list). A
// binding whose kind is not served is not waited for: the package starts,
// and the binding synchronizes whenever its kind appears.
func (h *Host) waitSync(ctx context.Context, ph *pkgHooks, m monitorRef, w *syncWait) error {
	what := fmt.Sprintf("synchronization of hook %s binding %s", m.hook.Name, m.binding.Name)
	tick := time.NewTicker(syncPoll)
	defer tick.Stop()
	done := w.done
	for {
		// A refused watch comes with a list that succeeds: checked first.
		if err := h.opts.KubeEvents.Forbidden(m.id); err != nil {
			return h.bindingForbidden(ph, m, err)
		}
		if !w.run && h.opts.KubeEvents.Synced(m.id) {
			return nil
		}
		if why := h.opts.KubeEvents.WaitingForKind(m.id); why != "" {
			h.kindNotServed(ph, m, why)
			return nil
		}
		select {
		case <-done:
			if w.err != nil {
				return fmt.Errorf("%s: %w", what, w.err)
			}
			if w.run {
				return nil
			}
			done = nil
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
	}
}

// ReasonKindNotServed is the Event reason on a GadgetPackage that started
// while a kubernetes binding's kind is not served.
const ReasonKindNotServed = "KindNotServed"

// kindNotServed tells the log and the package's Events that a binding
// waits for its kind, so that a typo does not look like a hang.
func (h *Host) kindNotServed(ph *pkgHooks, m monitorRef, why string) {
	h.log.Info("binding waits for its kind to be served; the package starts without its Synchronization", "package", ph.key,
		"hook", m.hook.Name, "binding", m.binding.Name, "apiVersion", m.binding.Monitor.APIVersion, "kind", m.binding.Monitor.Kind, "reason", why)
	if h.opts.Recorder == nil {
		return
	}
	h.opts.Recorder.Eventf(ph.ref(), corev1.EventTypeWarning, ReasonKindNotServed,
		"hook %s binding %s waits for kind %s in %s: %s; the binding starts when it is served", m.hook.Name, m.binding.Name, m.binding.Monitor.Kind, m.binding.Monitor.APIVersion, why)
}

// ReasonBindingForbidden is the Event reason on a GadgetPackage whose
// kubernetes binding the API server refuses to list or watch as the
// package's service account.
const ReasonBindingForbidden = "BindingForbidden"

// bindingForbidden tells the log and the package's Events that the API
// server refuses a binding's list or watch, and returns the error that
// fails the package's start (and lands in its status): it names the
// hook, the binding, the verb, resource and namespace, the account and
// what to do.
func (h *Host) bindingForbidden(ph *pkgHooks, m monitorRef, refusal error) error {
	err := fmt.Errorf("hook %s binding %s: %w: grant it to the service account (a Role and RoleBinding) or narrow the binding's namespaces",
		m.hook.Name, m.binding.Name, refusal)
	h.log.Info("the API server refuses a binding's watch; the package does not start", "package", ph.key, "hook", m.hook.Name,
		"binding", m.binding.Name, "error", err.Error())
	if h.opts.Recorder != nil {
		h.opts.Recorder.Event(ph.ref(), corev1.EventTypeWarning, ReasonBindingForbidden, err.Error())
	}
	return err
}

// ref is the package's GadgetPackage, for Events.
func (ph *pkgHooks) ref() *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "GadgetPackage", Namespace: ph.namespace, Name: ph.name}
}

// Disable stops the package's monitors and schedules; waits still open
// fail.
func (h *Host) Disable(key string) {
	ph, err := h.pkg(key)
	if err != nil {
		return
	}
	ph.mu.Lock()
	ph.enabled = false
	for _, w := range ph.waits {
		w.finish(errors.New("the package was disabled"))
	}
	ph.mu.Unlock()
	h.opts.Schedules.RemoveOwner(key)
	for _, m := range ph.monitors {
		_ = h.opts.KubeEvents.StopMonitor(m.id) // unknown after Forget: nothing to stop
	}
}

// Values are the package's values with hooks' patches.
func (h *Host) Values(key string) (map[string]any, error) {
	ph, err := h.pkg(key)
	if err != nil {
		return nil, err
	}
	return ph.values.PackageValues()
}

// Forget drops the package's monitors, schedules, rate limiters and
// metrics.
func (h *Host) Forget(key string) {
	h.Disable(key)
	h.mu.Lock()
	ph := h.pkgs[key]
	delete(h.pkgs, key)
	if ph != nil {
		for _, m := range ph.monitors {
			delete(h.monitors, m.id)
		}
	}
	h.mu.Unlock()
	if ph == nil {
		return
	}
	for _, m := range ph.monitors {
		_ = h.opts.KubeEvents.RemoveMonitor(m.id)
	}
	h.detach(func(k chainKey) bool { return k.hook.PackageKey == key })
	h.opts.Runner.Forget(key)
	if h.opts.Metrics != nil {
		h.opts.Metrics.Forget(key)
	}
}

// HookRan records a finished run for the dump, then tells the Observer.
// A run the operator cancelled itself (a newer plan, a removal, a stop)
// says nothing about the hook: it is logged at debug level and not
// recorded, so the dump and status keep the last real outcome.
func (h *Host) HookRan(key, hook string, finished time.Time, err error) {
	if errors.Is(err, context.Canceled) {
		h.log.V(1).Info("hook run cancelled", "package", key, "hook", hook, "error", err.Error())
		return
	}
	if ph, e := h.pkg(key); e == nil {
		ph.mu.Lock()
		hr := ph.runs[hook]
		if hr == nil {
			hr = &hookRuns{}
			ph.runs[hook] = hr
		}
		hr.count++
		hr.last, hr.lastErr = finished, ""
		if err != nil {
			hr.lastErr = err.Error()
		}
		ph.mu.Unlock()
	}
	if h.opts.Observer != nil {
		h.opts.Observer.HookRan(key, hook, finished, err)
	}
}
