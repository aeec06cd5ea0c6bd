package coordinator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/gadgetpackage"
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/packages/packagerepository"
	"github.com/gadgetpm/gadgetpm/packages/pull"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/objectpatch"
	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/queue/prommetrics"
	"github.com/gadgetpm/gadgetpm/scheduler"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// ClientOptions are the rate limits of one service's own API client.
type ClientOptions struct {
	// QPS and Burst; zero means the service's default.
	QPS   float32
	Burst int
}

// Options configure New.
type Options struct {
	// Config reaches the API server; every service makes its own client
	// from it. Required.
	Config *rest.Config
	// Client reads GadgetPackages and PackageRepositories and writes their
	// status and settings (the controller manager's client). Required.
	Client client.Client
	// Reader reads what the cache does not hold (repository Secrets);
	// default Client.
	Reader client.Reader
	// Mapper is the process's one REST mapper and discovery client, shared
	// by the Helm release service, the object patcher, the Kubernetes
	// event monitors and the hook host (and by the controller manager, when
	// the process runner gives it the same one). Default: a new one over
	// Config.
	Mapper *restmapping.Mapper
	// DataDir holds the package store. Required.
	DataDir string
	// Helm, Patcher and KubeEvents are the rate limits of those services'
	// own clients.
	Helm, Patcher, KubeEvents ClientOptions
	// HelmTimeout bounds waits for readiness and deletion; default 5m.
	HelmTimeout time.Duration
	// DriftInterval is how often each release's drift monitor checks its
	// objects (missing ones, and modified ones with spec.driftDetection);
	// default nelm's, 4m.
	DriftInterval time.Duration
	// HookTimeout bounds one hook run; default hooks.DefaultTimeout.
	HookTimeout time.Duration
	// MaxHookResultBytes caps each result file of a hook run; default
	// hooks.DefaultMaxResultFileBytes.
	MaxHookResultBytes int64
	// HookEnv is what every hook's environment holds besides the
	// protocol's paths.
	HookEnv hooks.Env
	// HookCredentials, when set, give every hook run API credentials of
	// its own (a kubeconfig in KUBECONFIG) and nothing of HookEnv.Kube or
	// the operator's environment; nil leaves hooks the operator's own.
	HookCredentials hooks.Credentials
	// HookTokenExpiry is the lifetime of the tokens the hooks of a package
	// that acts as a service account get; default and minimum
	// hookcreds.DefaultExpiry.
	HookTokenExpiry time.Duration
	// HookSandbox runs hooks (and their --config, when the default
	// Fetcher is used) sandboxed; nil runs them as the operator's user.
	HookSandbox sandbox.Launcher
	// Queue configures the queue service (backoff, attempts).
	Queue queue.Options
	// MaxAttempts of a package's lifecycle task before it is Stalled;
	// default gadgetpackage.DefaultMaxAttempts.
	MaxAttempts int
	// StopGrace bounds how long running tasks may take on Stop before they
	// are cancelled; default 30s.
	StopGrace time.Duration
	// Recorder records Events on GadgetPackages; nil records none.
	Recorder record.EventRecorder
	// Registerer gets the queue and hook metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger; default a discarding one.
	Logger logr.Logger
	// RepositoryAccess is what PackageRepositories may reach and which
	// Secrets they may read (the cluster resource namespace).
	RepositoryAccess repoaccess.Policy
	// RepositoryWorkers is how many PackageRepositories sync at once;
	// default packagerepository.DefaultWorkers.
	RepositoryWorkers int
	// Fetcher downloads into the package store; Run shares it with the
	// node's Trace controller. Default: one over a store in
	// <DataDir>/packages (PackageStore).
	Fetcher *fetch.Fetcher
	// UnsubscribeTimeout bounds how long removing a package waits for
	// the nodes to stop its Traces; default DefaultUnsubscribeTimeout.
	UnsubscribeTimeout time.Duration
	// DefaultServiceAccount is the ServiceAccount, in a package's
	// namespace, that a GadgetPackage without spec.serviceAccountName acts
	// as (its Helm release, object patches, bindings' watches and hooks'
	// tokens); empty too: the operator's own identity.
	DefaultServiceAccount string
	// HookLimits bound what hooks' bindings and metrics may hold in
	// memory; the zero value means the defaults.
	HookLimits HookLimits
}

// HookLimits bound the memory kube events and hook metrics may take. Zero
// means a field's default; negative means no limit. docs/kubeevents.md and
// docs/hooks.md describe them.
type HookLimits struct {
	// MaxPendingEventsPerBinding caps the objects whose kube events one
	// binding keeps while its hook's run waits; beyond it they become one
	// re-Synchronization (--max-pending-events-per-binding, default
	// hookhost.DefaultMaxPendingEventsPerBinding).
	MaxPendingEventsPerBinding int
	// MaxBindingContextsPerRun caps the binding contexts one hook run
	// gets; more go to the next run (--max-binding-contexts-per-run,
	// default hookhost.DefaultMaxBindingContextsPerRun).
	MaxBindingContextsPerRun int
	// MaxHookMetricSeries caps the metric series one hook keeps; new ones
	// beyond it are dropped and counted (--max-hook-metric-series, default
	// hooks.DefaultMaxSeriesPerHook).
	MaxHookMetricSeries int
}

// PackageStore opens the package store in <dataDir>/packages and a
// fetcher over it that reads repositories (and their Secrets) with
// reader, as access allows, and runs hooks' --config in hookSandbox (nil: none).
func PackageStore(dataDir string, reader client.Reader, access repoaccess.Policy, hookSandbox sandbox.Launcher) (*store.Store, *fetch.Fetcher, error) {
	st, err := store.New(filepath.Join(dataDir, "packages"), archive.Limits{})
	if err != nil {
		return nil, nil, err
	}
	f, err := fetch.New(fetch.Options{Reader: reader, Store: st, Access: access, Loader: loader.Options{HookSandbox: hookSandbox}})
	if err != nil {
		return nil, nil, err
	}
	return st, f, nil
}

// StoreCollector returns the garbage collection of the cluster role's
// package store (add it to a manager that runs on every replica): at
// start and every interval (0: store.DefaultGCInterval) it removes the
// archives and extracted trees of the digests no GadgetPackage's status
// names, reading them with reader in namespaces (none: all), except those in use (store.Hold: a
// download or install in flight, a node's loaded gadget) or written in
// the last interval (a package being installed, not yet in its status).
func StoreCollector(st *store.Store, reader client.Reader, namespaces []string, interval time.Duration, log logr.Logger) (*store.Collector, error) {
	col, err := store.NewCollector(store.CollectorOptions{Store: st, Named: pull.NamedDigests(reader, namespaces...), Interval: interval, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("cluster role: %w", err)
	}
	return col, nil
}

// Coordinator is the coordinator of the cluster role. It is a
// controller-runtime Runnable that needs leader election: Start runs the
// event handler until its context ends, then Stop tears everything down.
type Coordinator struct {
	opts Options
	log  logr.Logger

	queues   *queue.Service
	cron     *cron.Crontab
	helm     *nelm.Service
	patcher  *objectpatch.Patcher
	events   *kubeevents.Monitors
	sched    *scheduler.Scheduler
	packages *manager.Manager
	control  *gadgetpackage.Reconciler
	repos    *packagerepository.Reconciler
	hooks    *hookhost.Host
	mapper   *restmapping.Mapper

	// handlerStop ends the conversion of triggers into tasks; the handler
	// keeps forwarding queue events until the queue service closes them.
	handlerStop chan struct{}
	handlerDone chan struct{}
	stopOnce    sync.Once
	stopErr     error
}

// New builds the services in dependency order: the queue service and the
// crontab (independent), the Helm release service, the object
// patcher, the Kubernetes event monitors (each with its own client, all
// over the one REST mapper of Options.Mapper), the
// scheduler, the hook host over them, the package manager over all of
// them, and the GadgetPackage and PackageRepository controllers. It
// starts nothing.
func New(opts Options) (*Coordinator, error) {
	if opts.Config == nil || opts.Client == nil || opts.DataDir == "" {
		return nil, errors.New("create operator: Config, Client and DataDir are required")
	}
	if opts.Reader == nil {
		opts.Reader = opts.Client
	}
	if opts.Mapper == nil {
		m, err := restmapping.New(opts.Config)
		if err != nil {
			return nil, fmt.Errorf("create operator: %w", err)
		}
		opts.Mapper = m
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 30 * time.Second
	}
	if opts.UnsubscribeTimeout <= 0 {
		opts.UnsubscribeTimeout = DefaultUnsubscribeTimeout
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	if opts.HookCredentials != nil && opts.HookEnv.Kube == nil {
		// Not the operator's environment either (nil Kube means that).
		opts.HookEnv.Kube = map[string]string{}
	}
	c := &Coordinator{
		opts: opts, log: opts.Logger, mapper: opts.Mapper,
		handlerStop: make(chan struct{}), handlerDone: make(chan struct{}),
	}
	var err error

	qopts := opts.Queue
	if opts.Registerer != nil && qopts.Metrics == nil {
		m, err := prommetrics.NewWithRegisterer(opts.Registerer)
		if err != nil {
			return nil, fmt.Errorf("create operator: queue metrics: %w", err)
		}
		qopts.Metrics = m
	}
	c.queues = queue.NewService(qopts)
	c.cron = cron.New(cron.Options{})

	c.helm, err = nelm.New(opts.Config, nelm.Options{
		QPS: opts.Helm.QPS, Burst: opts.Helm.Burst, Timeout: opts.HelmTimeout, Discovery: opts.Mapper,
		MonitorInterval: opts.DriftInterval, Recorder: opts.Recorder, Logger: opts.Logger.WithName("helm"),
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	c.patcher, err = objectpatch.New(opts.Config, opts.Mapper, &objectpatch.Options{
		QPS: opts.Patcher.QPS, Burst: opts.Patcher.Burst, Logger: opts.Logger.WithName("objectpatch"),
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	c.events, err = kubeevents.New(kubeevents.Options{
		Config: opts.Config, QPS: opts.KubeEvents.QPS, Burst: opts.KubeEvents.Burst, Mapper: opts.Mapper,
		Logger: opts.Logger.WithName("kubeevents"),
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	c.sched = scheduler.New(scheduler.Options{})

	// The hooks of a package with a service account get its tokens.
	accounts, err := hookcreds.NewAccounts(hookcreds.Options{Config: opts.Config, Expiry: opts.HookTokenExpiry, Logger: opts.Logger.WithName("hookcreds")})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	var hookMetrics *hooks.Metrics
	if opts.Registerer != nil {
		if hookMetrics, err = hooks.NewMetrics(opts.Registerer, hooks.MetricsOptions{MaxSeriesPerHook: opts.HookLimits.MaxHookMetricSeries, Logger: c.log.WithName("hooks")}); err != nil {
			return nil, fmt.Errorf("create operator: hook metrics: %w", err)
		}
	}
	c.hooks, err = hookhost.New(hookhost.Options{
		Runner:     hooks.NewRunner(hooks.RunnerOptions{Timeout: opts.HookTimeout, MaxResultFileBytes: opts.MaxHookResultBytes, Env: opts.HookEnv, Credentials: opts.HookCredentials, Sandbox: opts.HookSandbox}),
		KubeEvents: c.events, Patcher: packagePatcher{Patcher: c.patcher, defaultSA: opts.DefaultServiceAccount}, Schedules: c.cron, Queues: c.queues, Releases: c.helm,
		Mapper: opts.Mapper, Client: opts.Client, Env: opts.HookEnv, MaxAttempts: opts.MaxAttempts,
		Metrics: hookMetrics, Observer: runRecorder{c}, Recorder: opts.Recorder, Logger: c.log,
		DefaultServiceAccount:      opts.DefaultServiceAccount,
		MaxPendingEventsPerBinding: opts.HookLimits.MaxPendingEventsPerBinding, MaxBindingContextsPerRun: opts.HookLimits.MaxBindingContextsPerRun,
		AccountCredentials: func(namespace, name, owner string) (hooks.Credentials, error) {
			is, err := accounts.Issuer(namespace, name, owner)
			if err != nil {
				return nil, err
			}
			return is, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}

	f := opts.Fetcher
	if f == nil {
		if _, f, err = PackageStore(opts.DataDir, opts.Reader, opts.RepositoryAccess, opts.HookSandbox); err != nil {
			return nil, fmt.Errorf("create operator: %w", err)
		}
	}
	c.packages, err = manager.New(manager.Options{
		Fetcher: f, Releaser: releaser{c.helm}, Hooks: c.hooks, Scheduler: c.sched, DefaultServiceAccount: opts.DefaultServiceAccount,
		Unsubscriber: unsubscribeWaiter{reader: opts.Reader, timeout: opts.UnsubscribeTimeout, recorder: opts.Recorder, log: c.log.WithName("unsubscribe")},
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	c.control, err = gadgetpackage.New(gadgetpackage.Options{
		Client: opts.Client, Manager: c.packages, Queue: c.queues, Recorder: opts.Recorder,
		MaxAttempts: opts.MaxAttempts, RemoveGrace: opts.StopGrace,
		BackoffBase: opts.Queue.BackoffBase, BackoffCap: opts.Queue.BackoffCap,
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	c.repos = &packagerepository.Reconciler{Client: opts.Client, Recorder: opts.Recorder, Access: opts.RepositoryAccess, Workers: opts.RepositoryWorkers}
	return c, nil
}

// SetupWithManager registers the coordinator and the cluster-role
// controllers with mgr; all of them run on the leader only.
func (c *Coordinator) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.Add(c); err != nil {
		return fmt.Errorf("add coordinator: %w", err)
	}
	if err := c.control.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up GadgetPackage controller: %w", err)
	}
	if err := c.repos.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up PackageRepository controller: %w", err)
	}
	return nil
}

// NeedLeaderElection: packages, hooks, releases and schedules belong to
// the cluster role.
func (c *Coordinator) NeedLeaderElection() bool { return true }

// Start runs the crontab, the Kubernetes event monitors, the
// scheduler and the event handler until ctx ends, then runs Stop.
func (c *Coordinator) Start(ctx context.Context) error {
	v, err := c.mapper.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("start operator: read the API server's version: %w", err)
	}
	if err := c.sched.SetKubeVersion(v.GitVersion); err != nil {
		return fmt.Errorf("start operator: %w", err)
	}
	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := c.cron.Start(runCtx); err != nil && !errors.Is(err, cron.ErrStopped) {
			c.log.Error(err, "crontab ended")
		}
	}()
	go func() {
		defer wg.Done()
		if err := c.events.Start(runCtx); err != nil {
			c.log.Error(err, "kube event monitors ended")
		}
	}()
	go c.handle()
	c.sched.Resume()
	c.log.Info("coordinator started")

	<-ctx.Done()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), c.opts.StopGrace+10*time.Second)
	defer stopCancel()
	err = c.Stop(stopCtx)
	cancel()
	wg.Wait()
	return err
}

// Stop tears down in the reverse order of what feeds what: Helm drift
// monitors, kube event delivery (paused), the crontab, the event
// handler, then the queue service (running tasks get StopGrace, then are
// cancelled), and last the kube monitors and the scheduler. It is safe to
// call twice and waits for every goroutine it owns.
func (c *Coordinator) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { c.stopErr = c.stop(ctx) })
	return c.stopErr
}

func (c *Coordinator) stop(ctx context.Context) error {
	var errs []error
	c.helm.StopMonitors()
	c.log.Info("stopped", "service", "helm-monitors")
	c.events.PauseHandleEvents()
	c.log.Info("stopped", "service", "kube-event-handling")
	graceCtx, cancel := context.WithTimeout(ctx, c.opts.StopGrace)
	defer cancel()
	// Schedule runs still queued need not finish for cron to stop: the
	// queue service stops them below.
	cronCtx, cronCancel := context.WithTimeout(ctx, time.Second)
	defer cronCancel()
	if err := c.cron.Stop(cronCtx); err != nil {
		c.log.Info("cron runs still queued at stop", "error", err.Error())
	}
	c.log.Info("stopped", "service", "cron")
	close(c.handlerStop)
	c.log.Info("stopped", "service", "event-handler")
	if err := withoutCancelledAtStop(c.queues.Stop(graceCtx), c.log); err != nil {
		errs = append(errs, fmt.Errorf("stop queues: %w", err))
	}
	// The handler ends once the queue service closed its events.
	select {
	case <-c.handlerDone:
	case <-ctx.Done():
		errs = append(errs, errors.New("stop event handler: queue events still open"))
	}
	c.log.Info("stopped", "service", "queues")
	c.events.Stop()
	// Nobody acts on enablement changes any more: unread ones are dropped.
	if err := c.sched.Stop(ctx); err != nil {
		c.log.V(1).Info("enablement changes dropped at stop", "error", err.Error())
	}
	c.log.Info("stopped", "service", "kube-monitors")
	return errors.Join(errs...)
}

// withoutCancelledAtStop logs the tasks the queue service cancelled
// because they outlived the stop grace, which is how an ordered stop
// ends them, and returns what else went wrong, if anything.
func withoutCancelledAtStop(err error, log logr.Logger) error {
	if err == nil {
		return nil
	}
	var rest []error
	for _, e := range flatten(err) {
		var c *queue.CancelledAtStopError
		if errors.As(e, &c) {
			log.Info("running tasks cancelled: they outlived the stop grace", "tasks", c.Tasks)
			continue
		}
		rest = append(rest, e)
	}
	return errors.Join(rest...)
}

// flatten lists the errors an errors.Join (behind any wrapping with one
// %w) holds, or err itself.
func flatten(err error) []error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
	}
	return []error{err}
}
