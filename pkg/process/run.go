package process

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/packagerepository"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
	"github.com/gadgetpm/gadgetpm/pkg/noderole"
	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
)

// LeaderElectionID names the Lease the cluster role is elected by.
const LeaderElectionID = "gadgetpm-leader"

// TracesPath is where the stream listener (Options.Stream) serves
// Stream-mode Traces: GET <TracesPath><namespace>/<name>.
const TracesPath = noderole.TracesPath

// Check refuses a role other than Roles, and a node role without a node
// name, naming the flags; an empty Role is RoleAll. Run checks too; a
// command checks first to answer before it reaches the cluster.
func (o *Options) Check() error {
	role := o.Role
	if role == "" {
		role = RoleAll
	}
	if !role.cluster() && !role.node() {
		return fmt.Errorf("run operator: --role %q: want one of %s", role, roleList())
	}
	if role.node() && o.NodeName == "" {
		return fmt.Errorf("run operator: --role=%s: %w", role, noderole.ErrNodeName)
	}
	if o.DriftInterval < 0 {
		return fmt.Errorf("run operator: --drift-interval %s: want a positive duration (0 means the default, 4m)", o.DriftInterval)
	}
	if o.RepositoryWorkers < 0 {
		return fmt.Errorf("run operator: --repository-workers %d: want at least 1 PackageRepository synced at once (0 means the default, %d)", o.RepositoryWorkers, packagerepository.DefaultWorkers)
	}
	return nil
}

func (o *Options) setDefaults() error {
	if err := o.Check(); err != nil {
		return err
	}
	if o.Role == "" {
		o.Role = RoleAll
	}
	if o.DataDir == "" {
		o.DataDir = "/var/lib/gadgetpm"
	}
	if o.DebugSocket == "" {
		o.DebugSocket = debugserver.DefaultSocket
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = ":8080"
	}
	if o.ProbeAddr == "" {
		o.ProbeAddr = ":8081"
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 30 * time.Second
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&o.LeaseDuration, 15 * time.Second}, {&o.RenewDeadline, 10 * time.Second}, {&o.RetryPeriod, 2 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = Namespace()
	}
	if o.ClusterResourceNamespace == "" {
		o.ClusterResourceNamespace = Namespace()
	}
	if o.Registerer == nil {
		o.Registerer = metrics.Registry
	}
	if o.Logger.GetSink() == nil {
		o.Logger = ctrl.Log.WithName("gadgetpm")
	}
	return nil
}

// Namespace is the operator's own namespace: $POD_NAMESPACE (the
// downward API), else the in-cluster service account's, else "default"
// (noderole.Namespace: the node role's binary needs it too).
func Namespace() string { return noderole.Namespace() }

// hookCredentials returns the issuer of the hooks' own credentials, or nil
// when hooks keep the operator's (no HookServiceAccount).
func hookCredentials(cfg *rest.Config, opts Options) (hooks.Credentials, error) {
	if opts.HookServiceAccount == "" {
		opts.Logger.Info("hooks run with the operator's own API credentials (no hook service account)")
		return nil, nil
	}
	is, err := hookcreds.New(hookcreds.Options{Config: cfg, Namespace: Namespace(), ServiceAccount: opts.HookServiceAccount,
		Expiry: opts.HookTokenExpiry, Logger: opts.Logger.WithName("hookcreds")})
	if err != nil {
		return nil, err
	}
	opts.Logger.Info("hooks get tokens of their own", "user", is.Subject())
	return is, nil
}

// newHookSandbox checks at start that hooks can run sandboxed as opts
// asks. Hooks never see the operator's data directory (every package's
// files, Trace outputs) or the debug socket's directory, but for their
// own package and run directory.
func newHookSandbox(ctx context.Context, opts Options) (sandbox.Launcher, error) {
	hide := []string{opts.DataDir, opts.FileOutputDir}
	if opts.DebugSocket != "-" {
		hide = append(hide, filepath.Dir(opts.DebugSocket))
	}
	if opts.HookSandbox != sandbox.Off && opts.HookSandbox != "" && opts.HookSandboxSocket != "" {
		return sandbox.NewRemote(opts.HookSandboxSocket, hide)
	}
	sb, err := sandbox.New(ctx, sandbox.Options{Mode: opts.HookSandbox, User: opts.HookUser, Hide: hide, Logger: opts.Logger})
	if sb == nil || err != nil {
		return nil, err // a nil Launcher, not a nil *Sandbox in one
	}
	return sb, nil
}

// Run runs the operator process until ctx ends: the roles opts.Role
// names, with health and readiness probes, the metrics endpoint and the
// debug server. The node role (pkg/noderole) runs at once, on every
// replica. The cluster role (the coordinator and the package and
// repository controllers) runs in a controller manager of its own,
// started while this process holds the Lease (or at once without leader
// election, once no one else holds it). When ctx ends the cluster role
// stops in order, then the Lease is released, and Run returns nil; when
// the Lease is lost the cluster role stops in order and Run returns
// ErrLeaseLost.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	if opts.Manager.QPS > 0 {
		cfg.QPS, cfg.Burst = opts.Manager.QPS, opts.Manager.Burst
	}
	// One REST mapper and discovery cache for the whole process: the
	// controller managers' clients and caches, and every service of the
	// coordinator. It discovers the API at its first lookup and again
	// whenever a lookup misses.
	mapper, err := restmapping.New(cfg)
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	// Hooks run in the cluster role only: its sandbox and the hooks'
	// credentials are checked before anything starts, so a missing
	// privilege or a bad token expiry fails at once.
	var cluster clusterDeps
	if opts.Role.cluster() {
		if cluster.sandbox, err = newHookSandbox(ctx, opts); err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
		if cluster.creds, err = hookCredentials(cfg, opts); err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
	}
	if opts.Role.cluster() && !opts.LeaderElection {
		if err := checkLeaseFree(ctx, cfg, opts.LeaderElectionNamespace, time.Now()); err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
	}
	var node *noderole.Node
	mopts := noderole.ManagerOptions{
		Namespaces: opts.Namespaces, MetricsAddr: opts.MetricsAddr, ProbeAddr: opts.ProbeAddr, Mapper: mapper,
		WatchLabelSelector: opts.WatchLabelSelector,
		// the cluster role's own stop comes first and has its own bound
		ShutdownTimeout: opts.StopGrace + 20*time.Second, Logger: opts.Logger,
	}
	if opts.Role.node() {
		if node, err = noderole.New(noderole.Options{NodeName: opts.NodeName, DataDir: opts.DataDir,
			FileOutputDir: opts.FileOutputDir, NodeCheck: opts.NodeCheck, Stream: opts.Stream, Logger: opts.Logger,
			ClusterResourceNamespace: opts.ClusterResourceNamespace, NoCrossNamespaceRefs: opts.NoCrossNamespaceRefs,
			MaxPackageBytes: opts.MaxPackageBytes, MaxIndexBytes: opts.MaxIndexBytes, CacheGCInterval: opts.CacheGCInterval}); err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
		mopts.NodeCache = true
	}
	mgr, err := noderole.NewManager(cfg, mopts)
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	var (
		coord   *coordinator.Coordinator
		st      *store.Store
		fetcher *fetch.Fetcher
	)
	if opts.Role.cluster() {
		if coord, st, fetcher, err = clusterRole(cfg, mgr, mapper, cluster, opts); err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
	}
	if node != nil && fetcher != nil {
		// Both roles in one process share the package store.
		node.SetStore(st, fetcher)
	}
	if node != nil {
		if err := node.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
	}
	if opts.DebugSocket != "-" {
		dbg, err := debugserver.New(debugserver.Options{Path: opts.DebugSocket, Source: debugSource(coord, node), Logger: opts.Logger.WithName("debug")})
		if err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
		if err := mgr.Add(dbg); err != nil {
			return fmt.Errorf("run operator: add debug server: %w", err)
		}
	}
	opts.Logger.Info("starting", "role", opts.Role, "node", opts.NodeName, "dataDir", opts.DataDir, "leaderElection", opts.LeaderElection)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	opts.Logger.Info("stopped", "role", opts.Role)
	return nil
}

// clusterDeps are what the cluster role's hooks run with.
type clusterDeps struct {
	sandbox sandbox.Launcher
	creds   hooks.Credentials
}

// clusterRole builds the cluster role in a controller manager of its own
// and adds to mgr the runnable that runs it: elected through the Lease,
// or at once without leader election.
func clusterRole(cfg *rest.Config, mgr manager.Manager, mapper *restmapping.Mapper, deps clusterDeps, opts Options) (*coordinator.Coordinator, *store.Store, *fetch.Fetcher, error) {
	// Its metrics share controller-runtime's registry, served by mgr.
	cmgr, err := noderole.NewManager(cfg, noderole.ManagerOptions{
		Namespaces: opts.Namespaces, MetricsAddr: "0", ProbeAddr: "0", Mapper: mapper,
		WatchLabelSelector: opts.WatchLabelSelector,
		ShutdownTimeout:    opts.StopGrace + 15*time.Second, Logger: opts.Logger,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cluster role: %w", err)
	}
	access := repoaccess.Policy{ClusterResourceNamespace: opts.ClusterResourceNamespace,
		MaxPackageBytes: opts.MaxPackageBytes, MaxIndexBytes: opts.MaxIndexBytes}
	st, fetcher, err := coordinator.PackageStore(opts.DataDir, cmgr.GetAPIReader(), access, deps.sandbox)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cluster role: %w", err)
	}
	// On every replica, leader or not (mgr): a node role in this process
	// shares the store.
	storeGC, err := coordinator.StoreCollector(st, cmgr.GetAPIReader(), opts.Namespaces, opts.CacheGCInterval, opts.Logger.WithName("store-gc"))
	if err != nil {
		return nil, nil, nil, err
	}
	if err := mgr.Add(storeGC); err != nil {
		return nil, nil, nil, fmt.Errorf("cluster role: %w", err)
	}
	coord, err := coordinator.New(coordinator.Options{
		Config: cfg, Client: cmgr.GetClient(), Reader: cmgr.GetAPIReader(), Mapper: mapper, DataDir: opts.DataDir, Fetcher: fetcher, HookSandbox: deps.sandbox, RepositoryAccess: access,
		UnsubscribeTimeout: opts.UnsubscribeTimeout, HookLimits: opts.HookLimits,
		RepositoryWorkers: opts.RepositoryWorkers, DriftInterval: opts.DriftInterval,
		Helm: opts.Helm, Patcher: opts.Patcher, KubeEvents: opts.KubeEvents,
		// Hooks get a kubeconfig of their own (HookCredentials), else
		// KUBECONFIG or KUBERNETES_SERVICE_HOST/PORT from the operator's
		// environment, so kubectl in them reaches this cluster.
		HookEnv: hooks.Env{}, HookCredentials: deps.creds, HookTokenExpiry: opts.HookTokenExpiry,
		StopGrace:  opts.StopGrace,
		Recorder:   cmgr.GetEventRecorderFor("gadgetpm"), //nolint:staticcheck // the services take client-go's recorder
		Registerer: opts.Registerer,
		Logger:     opts.Logger.WithName("coordinator"),

		// Packages without spec.serviceAccountName act as it.
		DefaultServiceAccount: opts.DefaultServiceAccount,

		MaxHookResultBytes: opts.MaxHookResultBytes,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cluster role: %w", err)
	}
	if err := coord.SetupWithManager(cmgr); err != nil {
		return nil, nil, nil, fmt.Errorf("cluster role: %w", err)
	}
	run := func(ctx context.Context) error {
		if err := cmgr.Start(ctx); err != nil {
			return err
		}
		opts.Logger.Info("cluster role stopped")
		return nil
	}
	var r manager.Runnable = unelected(run)
	if opts.LeaderElection {
		if r, err = newElected(cfg, opts, run); err != nil {
			return nil, nil, nil, fmt.Errorf("cluster role: %w", err)
		}
	}
	if err := mgr.Add(r); err != nil {
		return nil, nil, nil, fmt.Errorf("cluster role: %w", err)
	}
	return coord, st, fetcher, nil
}

// unelected runs the cluster role without leader election.
type unelected func(context.Context) error

// NeedLeaderElection is false: there is no election.
func (unelected) NeedLeaderElection() bool { return false }

// Start runs the cluster role until ctx ends.
func (u unelected) Start(ctx context.Context) error { return u(ctx) }

// debugSource is what the debug socket dumps: the coordinator's state
// (cluster role), the node's gadget runs and its name (node role).
func debugSource(coord *coordinator.Coordinator, node *noderole.Node) debugserver.Source {
	var src debugserver.Source = debugserver.NoPackages{}
	if coord != nil {
		src = coord
	}
	if node == nil {
		return src
	}
	return node.DebugSource(src)
}
