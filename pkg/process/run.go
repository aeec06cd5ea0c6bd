package process

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/pkg/apis"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// LeaderElectionID names the Lease the cluster role is elected by.
const LeaderElectionID = "gadgetpm-leader"

// Scheme holds the Kubernetes built-in types and gadgetpm's.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("build scheme: %w", err)
	}
	if err := apis.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("build scheme: %w", err)
	}
	return s, nil
}

func (o *Options) setDefaults() error {
	if o.NodeName == "" {
		return errors.New("run operator: the node name is required (--node-name, or NODE_NAME from the downward API)")
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
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = Namespace()
	}
	if o.Logger.GetSink() == nil {
		o.Logger = ctrl.Log.WithName("gadgetpm")
	}
	return nil
}

// Namespace is the operator's own namespace: $POD_NAMESPACE (the
// downward API), else the in-cluster service account's, else "default".
func Namespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if ns, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(ns))
	}
	return "default"
}

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

// Run runs the operator process until ctx ends: one controller-runtime
// Manager holding the cluster role (the coordinator and the package and
// repository controllers, on the Lease holder only) and the node role
// (every replica), with health and readiness probes and the metrics
// endpoint. When ctx ends the coordinator stops in order and Run returns
// nil.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	hookSandbox, err := newHookSandbox(ctx, opts)
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	if opts.Manager.QPS > 0 {
		cfg.QPS, cfg.Burst = opts.Manager.QPS, opts.Manager.Burst
	}
	// Before anything starts: a bad hook token expiry fails at once.
	hookCreds, err := hookCredentials(cfg, opts)
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	// One REST mapper and discovery cache for the whole process: the
	// controller manager's client and caches, and every service of the
	// coordinator. It discovers the API at its first lookup and again
	// whenever a lookup misses.
	mapper, err := restmapping.New(cfg)
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	// The node's Trace outputs in Stream mode are served on the metrics
	// endpoint: GET /traces/<namespace>/<name>.
	hub := output.NewHub(output.HubOptions{})
	mopts := ctrl.Options{
		Scheme: scheme,
		Logger: opts.Logger,
		MapperProvider: func(*rest.Config, *http.Client) (meta.RESTMapper, error) {
			return mapper, nil
		},
		Metrics: metricsserver.Options{BindAddress: opts.MetricsAddr,
			ExtraHandlers: map[string]http.Handler{TracesPath: hub.Handler(TracesPath)}},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr(opts.StopGrace + 15*time.Second),
	}
	if len(opts.Namespaces) > 0 {
		mopts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{}}
		for _, ns := range opts.Namespaces {
			mopts.Cache.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return fmt.Errorf("run operator: create controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	st, fetcher, err := coordinator.PackageStore(opts.DataDir, mgr.GetAPIReader(), false, hookSandbox)
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	coord, err := coordinator.New(coordinator.Options{
		Config: cfg, Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Mapper: mapper, DataDir: opts.DataDir, Fetcher: fetcher, HookSandbox: hookSandbox,
		UnsubscribeTimeout: opts.UnsubscribeTimeout,
		Helm:               opts.Helm, Patcher: opts.Patcher, KubeEvents: opts.KubeEvents,
		// Hooks get a kubeconfig of their own (HookCredentials), else
		// KUBECONFIG or KUBERNETES_SERVICE_HOST/PORT from the operator's
		// environment, so kubectl in them reaches this cluster.
		HookEnv: hooks.Env{}, HookCredentials: hookCreds,
		StopGrace:  opts.StopGrace,
		Recorder:   mgr.GetEventRecorderFor("gadgetpm"), //nolint:staticcheck // the services take client-go's recorder
		Registerer: metrics.Registry,
		Logger:     opts.Logger.WithName("coordinator"),
	})
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	if err := coord.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	tc, err := trace.New(trace.Options{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: scheme,
		Recorder: mgr.GetEventRecorderFor("gadgetpm-node"), //nolint:staticcheck // the controller takes client-go's recorder
		NodeName: opts.NodeName, DataDir: opts.DataDir, Store: st, Fetcher: fetcher, Hub: hub,
		FileOutputDir: opts.FileOutputDir, NodeCheck: opts.NodeCheck, Logger: opts.Logger.WithName("trace"),
	})
	if err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	if err := tc.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	if err := mgr.Add(hubStopper{hub}); err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	if opts.DebugSocket != "-" {
		dbg, err := debugserver.New(debugserver.Options{Path: opts.DebugSocket, Source: debugserver.WithNode(debugserver.WithNodeRuns(coord, tc.Runs), opts.NodeName), Logger: opts.Logger.WithName("debug")})
		if err != nil {
			return fmt.Errorf("run operator: %w", err)
		}
		if err := mgr.Add(dbg); err != nil {
			return fmt.Errorf("run operator: add debug server: %w", err)
		}
	}
	opts.Logger.Info("starting", "node", opts.NodeName, "dataDir", opts.DataDir, "leaderElection", opts.LeaderElection)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run operator: %w", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

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

// TracesPath is where the metrics endpoint serves Stream-mode Traces:
// GET <TracesPath><namespace>/<name>.
const TracesPath = "/traces/"

// hubStopper ends every live Trace stream when the manager stops, so the
// HTTP server's shutdown does not wait for clients that never leave.
type hubStopper struct{ hub *output.Hub }

// NeedLeaderElection is false: every replica serves its node's streams.
func (hubStopper) NeedLeaderElection() bool { return false }

// Start waits for ctx and stops the hub.
func (h hubStopper) Start(ctx context.Context) error {
	<-ctx.Done()
	h.hub.Stop()
	return nil
}
