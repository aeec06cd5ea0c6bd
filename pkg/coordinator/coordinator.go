package coordinator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/gadgetpackage"
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/packages/repository"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/objectpatch"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/queue/prommetrics"
	"github.com/gadgetpm/gadgetpm/scheduler"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

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
	// DataDir holds the package store. Required.
	DataDir string
	// Helm, Patcher and KubeEvents are the rate limits of those services'
	// own clients.
	Helm, Patcher, KubeEvents ClientOptions
	// HelmTimeout bounds waits for readiness and deletion; default 5m.
	HelmTimeout time.Duration
	// HookTimeout bounds one hook run; default hooks.DefaultTimeout.
	HookTimeout time.Duration
	// HookEnv is what every hook's environment holds besides the
	// protocol's paths.
	HookEnv hooks.Env
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
	// PlainHTTPRegistries talks plain HTTP to oci:// registries.
	PlainHTTPRegistries bool
	// Fetcher downloads into the package store; Run shares it with the
	// node's Trace controller. Default: one over a store in
	// <DataDir>/packages (PackageStore).
	Fetcher *fetch.Fetcher
	// UnsubscribeTimeout bounds how long removing a package waits for
	// the nodes to stop its Traces; default DefaultUnsubscribeTimeout.
	UnsubscribeTimeout time.Duration
}

// PackageStore opens the package store in <dataDir>/packages and a
// fetcher over it that reads repositories (and their Secrets) with
// reader.
func PackageStore(dataDir string, reader client.Reader, plainHTTP bool) (*store.Store, *fetch.Fetcher, error) {
	st, err := store.New(filepath.Join(dataDir, "packages"), archive.Limits{})
	if err != nil {
		return nil, nil, err
	}
	f, err := fetch.New(fetch.Options{Reader: reader, Store: st, PlainHTTPRegistries: plainHTTP})
	if err != nil {
		return nil, nil, err
	}
	return st, f, nil
}

// Coordinator is the coordinator of the cluster role. It is a
// controller-runtime Runnable that needs leader election: Start runs the
// event handler until its context ends, then Stop tears everything down.
type Coordinator struct {
	opts Options
	log  logr.Logger

	queues   *queue.Service
	cron     *cron.Manager
	helm     *nelm.Service
	patcher  *objectpatch.Patcher
	events   *kubeevents.Manager
	sched    *scheduler.Scheduler
	packages *manager.Manager
	control  *gadgetpackage.Reconciler
	repos    *repository.Reconciler
	hooks    *hookhost.Host
	disco    discovery.DiscoveryInterface

	// handlerStop ends the conversion of triggers into tasks; the handler
	// keeps forwarding queue events until the queue service closes them.
	handlerStop chan struct{}
	handlerDone chan struct{}
	stopOnce    sync.Once
	stopErr     error
}

// New builds the services in dependency order: the queue service and the
// cron manager (independent), the Helm release service, the object
// patcher, the Kubernetes events manager (each with its own client), the
// package manager over all of them, and the GadgetPackage and
// PackageRepository controllers. It starts nothing.
func New(opts Options) (*Coordinator, error) {
	if opts.Config == nil || opts.Client == nil || opts.DataDir == "" {
		return nil, errors.New("create operator: Config, Client and DataDir are required")
	}
	if opts.Reader == nil {
		opts.Reader = opts.Client
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
	o := &Coordinator{
		opts: opts, log: opts.Logger,
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
	o.queues = queue.NewService(qopts)
	o.cron = cron.New(cron.Options{})

	o.helm, err = nelm.New(opts.Config, nelm.Options{
		QPS: opts.Helm.QPS, Burst: opts.Helm.Burst, Timeout: opts.HelmTimeout,
		Recorder: opts.Recorder, Logger: opts.Logger.WithName("helm"),
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	mapper, err := hooks.NewRESTMapper(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	o.patcher, err = objectpatch.New(opts.Config, mapper, &objectpatch.Options{
		QPS: opts.Patcher.QPS, Burst: opts.Patcher.Burst, Logger: opts.Logger.WithName("objectpatch"),
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	o.events, err = kubeevents.New(kubeevents.Options{
		Config: opts.Config, QPS: opts.KubeEvents.QPS, Burst: opts.KubeEvents.Burst, Logger: opts.Logger.WithName("kubeevents"),
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	o.sched = scheduler.New(scheduler.Options{})
	o.disco, err = discovery.NewDiscoveryClientForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}

	var hookMetrics *hooks.Metrics
	if opts.Registerer != nil {
		if hookMetrics, err = hooks.NewMetrics(opts.Registerer); err != nil {
			return nil, fmt.Errorf("create operator: hook metrics: %w", err)
		}
	}
	o.hooks, err = hookhost.New(hookhost.Options{
		Runner:     hooks.NewRunner(hooks.RunnerOptions{Timeout: opts.HookTimeout, Env: opts.HookEnv}),
		KubeEvents: o.events, Patcher: o.patcher, Schedules: o.cron, Queues: o.queues, Releases: o.helm,
		Mapper: mapper, Client: opts.Client, Env: opts.HookEnv, MaxAttempts: opts.MaxAttempts,
		Metrics: hookMetrics, Observer: runRecorder{o}, Recorder: opts.Recorder, Logger: o.log,
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}

	f := opts.Fetcher
	if f == nil {
		if _, f, err = PackageStore(opts.DataDir, opts.Reader, opts.PlainHTTPRegistries); err != nil {
			return nil, fmt.Errorf("create operator: %w", err)
		}
	}
	o.packages, err = manager.New(manager.Options{
		Fetcher: f, Releaser: releaser{o.helm}, Hooks: o.hooks, Scheduler: o.sched,
		Unsubscriber: unsubscribeWaiter{reader: opts.Reader, timeout: opts.UnsubscribeTimeout, recorder: opts.Recorder, log: o.log.WithName("unsubscribe")},
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	o.control, err = gadgetpackage.New(gadgetpackage.Options{
		Client: opts.Client, Manager: o.packages, Queue: o.queues, Recorder: opts.Recorder,
		MaxAttempts: opts.MaxAttempts, RemoveGrace: opts.StopGrace,
	})
	if err != nil {
		return nil, fmt.Errorf("create operator: %w", err)
	}
	o.repos = &repository.Reconciler{Client: opts.Client, Recorder: opts.Recorder, PlainHTTPRegistries: opts.PlainHTTPRegistries}
	return o, nil
}

// SetupWithManager registers the coordinator and the cluster-role
// controllers with mgr; all of them run on the leader only.
func (o *Coordinator) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.Add(o); err != nil {
		return fmt.Errorf("add coordinator: %w", err)
	}
	if err := o.control.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up GadgetPackage controller: %w", err)
	}
	if err := o.repos.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up PackageRepository controller: %w", err)
	}
	return nil
}

// NeedLeaderElection: packages, hooks, releases and schedules belong to
// the cluster role.
func (o *Coordinator) NeedLeaderElection() bool { return true }

// Start runs the cron manager, the Kubernetes events manager, the
// scheduler and the event handler until ctx ends, then runs Stop.
func (o *Coordinator) Start(ctx context.Context) error {
	v, err := o.disco.ServerVersion()
	if err != nil {
		return fmt.Errorf("start operator: read the API server's version: %w", err)
	}
	if err := o.sched.SetKubeVersion(v.GitVersion); err != nil {
		return fmt.Errorf("start operator: %w", err)
	}
	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := o.cron.Start(runCtx); err != nil && !errors.Is(err, cron.ErrStopped) {
			o.log.Error(err, "cron manager ended")
		}
	}()
	go func() {
		defer wg.Done()
		if err := o.events.Start(runCtx); err != nil {
			o.log.Error(err, "kube events manager ended")
		}
	}()
	go o.handle()
	o.sched.Resume()
	o.log.Info("coordinator started")

	<-ctx.Done()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), o.opts.StopGrace+10*time.Second)
	defer stopCancel()
	err = o.Stop(stopCtx)
	cancel()
	wg.Wait()
	return err
}

// Stop tears down in the reverse order of what feeds what: Helm drift
// monitors, kube event delivery (paused), the cron manager, the event
// handler, then the queue service (running tasks get StopGrace, then are
// cancelled), and last the kube monitors and the scheduler. It is safe to
// call twice and waits for every goroutine it owns.
func (o *Coordinator) Stop(ctx context.Context) error {
	o.stopOnce.Do(func() { o.stopErr = o.stop(ctx) })
	return o.stopErr
}

func (o *Coordinator) stop(ctx context.Context) error {
	var errs []error
	o.helm.StopMonitors()
	o.log.Info("stopped", "service", "helm-monitors")
	o.events.PauseHandleEvents()
	o.log.Info("stopped", "service", "kube-event-handling")
	graceCtx, cancel := context.WithTimeout(ctx, o.opts.StopGrace)
	defer cancel()
	// Schedule runs still queued need not finish for cron to stop: the
	// queue service stops them below.
	cronCtx, cronCancel := context.WithTimeout(ctx, time.Second)
	defer cronCancel()
	if err := o.cron.Stop(cronCtx); err != nil {
		o.log.Info("cron runs still queued at stop", "error", err.Error())
	}
	o.log.Info("stopped", "service", "cron")
	close(o.handlerStop)
	o.log.Info("stopped", "service", "event-handler")
	if err := o.queues.Stop(graceCtx); err != nil {
		errs = append(errs, fmt.Errorf("stop queues: %w", err))
	}
	// The handler ends once the queue service closed its events.
	select {
	case <-o.handlerDone:
	case <-ctx.Done():
		errs = append(errs, errors.New("stop event handler: queue events still open"))
	}
	o.log.Info("stopped", "service", "queues")
	o.events.Stop()
	// Nobody acts on enablement changes any more: unread ones are dropped.
	if err := o.sched.Stop(ctx); err != nil {
		o.log.V(1).Info("enablement changes dropped at stop", "error", err.Error())
	}
	o.log.Info("stopped", "service", "kube-monitors")
	return errors.Join(errs...)
}

// handle is the event handler: it turns cron triggers, kube events and
// drift reports into tasks, hands scheduler and queue events to the
// GadgetPackage controller, and ends when the queue service closes its
// events.
func (o *Coordinator) handle() {
	defer close(o.handlerDone)
	triggers, kube, drifts, enablement := o.cron.Triggers(), o.events.Events(), o.helm.Drifts(), o.sched.Events()
	queueEvents := o.queues.Events()
	stop := o.handlerStop
	for {
		select {
		case <-stop:
			triggers, kube, drifts, enablement, stop = nil, nil, nil, nil, nil
		case t, ok := <-triggers:
			if !ok {
				triggers = nil
				continue
			}
			o.hooks.OnSchedule(t)
		case ev, ok := <-kube:
			if !ok {
				kube = nil
				continue
			}
			o.hooks.OnKubeEvent(ev)
		case d := <-drifts:
			o.onDrift(d)
		case ev, ok := <-enablement:
			if !ok {
				enablement = nil
				continue
			}
			o.control.HandleSchedulerEvent(ev)
		case ev, ok := <-queueEvents:
			if !ok {
				return
			}
			o.onQueueEvent(ev)
		}
	}
}

func (o *Coordinator) onDrift(d nelm.Drift) {
	key := d.Package.Key()
	t, ok := o.packages.RunTask(key)
	if !ok {
		return
	}
	o.log.Info("release drifted; re-applying", "package", key, "missing", fmt.Sprint(d.Missing))
	if err := o.queues.Enqueue(queue.PackageQueueName(key, ""), t, queue.Unique()); err != nil {
		o.log.Error(err, "enqueue run after drift", "package", key)
	}
}

func (o *Coordinator) onQueueEvent(ev queue.Event) {
	if ev.Kind == queue.Failed {
		// One error line per task given up on, not per attempt: the
		// attempts' errors are in the dump (lastError) and hooks' failed
		// attempts are logged at info level.
		key, _, _ := strings.Cut(ev.Queue, "/")
		o.log.Error(ev.Err, "task failed; giving up", "package", key, "queue", ev.Queue, "task", ev.Task,
			"attempts", ev.Attempts, "reason", fetch.ReasonOf(ev.Err, v1alpha1.ReasonRetriesExhausted))
	}
	o.control.HandleEvent(ev)
	o.hooks.OnQueueEvent(ev)
}

// runRecorder carries a hook run the host recorded into the package's
// state and its GadgetPackage's status.hooks.
type runRecorder struct{ o *Coordinator }

func (r runRecorder) HookRan(key, hook string, finished time.Time, err error) {
	r.o.control.HookRan(key, r.o.packages.RecordHookRun(key, hook, finished, err))
}

// Dump returns the operator's whole state.
func (o *Coordinator) Dump() Dump {
	d := Dump{
		Time:              time.Now().UTC(),
		Queues:            o.queues.Dump(),
		Schedules:         o.cron.Entries(),
		Enablement:        o.sched.Statuses(),
		PendingKubeEvents: o.events.Pending(),
	}
	for _, key := range o.packages.Keys() {
		if p, ok := o.Package(key); ok {
			d.Packages = append(d.Packages, p)
		}
	}
	return d
}

// Package returns one package's part of the dump.
func (o *Coordinator) Package(key string) (PackageDump, bool) {
	st, ok := o.packages.State(key)
	if !ok {
		return PackageDump{}, false
	}
	p := PackageDump{
		Key: key, Package: st.Package, Phase: string(st.Phase), Enabled: st.Enabled, Reason: st.Reason,
		Version: st.Version, Digest: st.Digest, HelmRevision: st.HelmRevision,
		Queues: []string{queue.PackageQueueName(key, "")},
	}
	for _, q := range st.Queues {
		p.Queues = append(p.Queues, queue.PackageQueueName(key, q))
	}
	hp, ok := o.hooks.Package(key)
	if !ok {
		p.Values = st.Values
		for _, h := range st.Hooks {
			p.Hooks = append(p.Hooks, hookhost.HookDump{Name: h.Name, Bindings: h.Bindings, LastError: h.LastError})
		}
		return p, true
	}
	p.Values, p.Hooks, p.Subscriptions = hp.Values, hp.Hooks, hp.Subscriptions
	return p, true
}

// HookSnapshots returns the current objects of each kubernetes binding of
// one hook.
func (o *Coordinator) HookSnapshots(key, hook string) (hookhost.Snapshots, bool) {
	return o.hooks.HookSnapshots(key, hook)
}

// releaser applies packages' charts through the Helm release service.
type releaser struct{ helm *nelm.Service }

func nelmPackage(rel manager.Release) nelm.Package {
	return nelm.Package{Namespace: rel.Namespace, Name: rel.Name, AdoptRelease: rel.AdoptRelease,
		Object: &corev1.ObjectReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "GadgetPackage", Namespace: rel.Namespace, Name: rel.Name,
		}}
}

// Upgrade applies the release. A release of the name that gadgetpm did not
// make fails terminally: retrying cannot help until the user renames the
// package, removes that release or sets the adopt-release annotation
// (which re-arms the package).
func (r releaser) Upgrade(ctx context.Context, rel manager.Release) (int, error) {
	res, err := r.helm.Upgrade(ctx, nelmPackage(rel), rel.Chart, rel.Values)
	if errors.Is(err, nelm.ErrNotOwned) {
		return 0, queue.Terminal(err)
	}
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// InstallCRDs creates the chart's crds/ before its hooks start; a chart
// whose crds/ cannot be read or are refused fails terminally.
func (r releaser) InstallCRDs(ctx context.Context, rel manager.Release) error {
	err := r.helm.InstallCRDs(ctx, nelmPackage(rel), rel.Chart)
	if errors.Is(err, nelm.ErrInvalidChart) {
		return queue.Terminal(err)
	}
	return err
}

var _ manager.CRDInstaller = releaser{}

func (r releaser) Delete(ctx context.Context, rel manager.Release) error {
	return r.helm.Delete(ctx, nelmPackage(rel))
}
