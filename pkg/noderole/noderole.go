package noderole

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// TracesPath is where the stream listener (StreamOptions) serves
// Stream-mode Traces: GET <TracesPath><namespace>/<name>.
const TracesPath = "/traces/"

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

// ManagerOptions configure NewManager.
type ManagerOptions struct {
	// Namespaces whose objects the manager's cache holds; empty means
	// every namespace.
	Namespaces []string
	// WatchLabelSelector limits the GadgetPackages, PackageRepositories
	// and Traces the manager's cache holds, and so reconciles, to those
	// it matches (--watch-label-selector); empty means all of them.
	WatchLabelSelector string
	// MetricsAddr serves Prometheus metrics (and Handlers); "0" disables
	// it.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "0" disables them.
	ProbeAddr string
	// Handlers are extra paths of the metrics endpoint.
	Handlers map[string]http.Handler
	// QPS and Burst of the manager's client; zero keeps cfg's.
	QPS   float32
	Burst int
	// Mapper is the process's REST mapper; nil makes one.
	Mapper *restmapping.Mapper
	// ShutdownTimeout bounds the manager's stop (its runnables' own
	// ordered stops); zero means controller-runtime's default.
	ShutdownTimeout time.Duration
	// NodeCache gives the cache what the node role reads and no more
	// (trace.CacheOptions: no managedFields, slim GadgetPackages): set it
	// for the manager the Trace controller runs in, never for the
	// cluster role's.
	NodeCache bool
	// Logger of the manager.
	Logger logr.Logger
}

// NewManager returns a controller manager with gadgetpm's scheme, the
// REST mapper, the metrics endpoint and the probes, and no leader
// election: whatever needs the Lease is elected by its owner.
func NewManager(cfg *rest.Config, opts ManagerOptions) (manager.Manager, error) {
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	if opts.QPS > 0 {
		cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	}
	mapper := opts.Mapper
	if mapper == nil {
		if mapper, err = restmapping.New(cfg); err != nil {
			return nil, fmt.Errorf("create controller manager: %w", err)
		}
	}
	mopts := ctrl.Options{
		Scheme: scheme,
		Logger: opts.Logger,
		MapperProvider: func(*rest.Config, *http.Client) (meta.RESTMapper, error) {
			return mapper, nil
		},
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsAddr, ExtraHandlers: opts.Handlers},
		HealthProbeBindAddress: opts.ProbeAddr,
		// Controller names are unique within a process by construction
		// (one per kind, the Trace controller's carries the node name);
		// the check is process-wide and would refuse a second process
		// of a test binary.
		Controller: config.Controller{SkipNameValidation: new(true)},
	}
	if opts.ShutdownTimeout > 0 {
		mopts.GracefulShutdownTimeout = &opts.ShutdownTimeout
	}
	if opts.NodeCache {
		mopts.Cache = trace.CacheOptions()
	}
	if err := watchSelector(&mopts.Cache, opts.WatchLabelSelector); err != nil {
		return nil, fmt.Errorf("create controller manager: %w", err)
	}
	if len(opts.Namespaces) > 0 {
		mopts.Cache.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			mopts.Cache.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("create controller manager: %w", err)
	}
	if opts.ProbeAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return nil, fmt.Errorf("create controller manager: %w", err)
		}
		if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
			return nil, fmt.Errorf("create controller manager: %w", err)
		}
	}
	return mgr, nil
}

// watchSelector limits c to gadgetpm's objects that selector matches
// (apis.ShardCache): a shard of several gadgetpm instances in one
// cluster, as Flux's --watch-label-selector does.
func watchSelector(c *cache.Options, selector string) error {
	if selector == "" {
		return nil
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return fmt.Errorf("--watch-label-selector %q: %w (want a label selector such as %s=shard1 or !%s)", selector, err, apis.ShardKey, apis.ShardKey)
	}
	apis.ShardCache(c, sel)
	return nil
}

// Options configure New.
type Options struct {
	// NodeName is the node this process runs for: it runs the Traces
	// whose spec.node is this node. Required.
	NodeName string
	// DataDir is the data directory (the package store is
	// <DataDir>/packages unless SetStore shares another).
	DataDir string
	// FileOutputDir is where Traces in File mode write; default
	// <DataDir>/traces.
	FileOutputDir string
	// NodeCheck requires a Trace's spec.node to name an existing Node.
	// Without it spec.node must equal NodeName.
	NodeCheck bool
	// ClusterResourceNamespace is where the node reads PackageRepository
	// Secrets from (a private repository's credentials); any other
	// namespace is refused. Default Namespace(), the operator's own.
	ClusterResourceNamespace string
	// MaxPackageBytes and MaxIndexBytes cap what a repository may send
	// (repoaccess.Policy); zero: the defaults.
	MaxPackageBytes, MaxIndexBytes int64
	// CacheGCInterval (--cache-gc-interval) is how often the node's
	// gadget cache and its own package store (not one shared by
	// SetStore) are collected; zero: store.DefaultGCInterval.
	CacheGCInterval time.Duration
	// NoCrossNamespaceRefs lets a Trace's spec.gadget name only a
	// GadgetPackage in the Trace's own namespace.
	NoCrossNamespaceRefs bool
	// Stream configures the listener of Stream-mode Traces.
	Stream StreamOptions
	// Logger of the node role; the Trace controller logs as its "trace".
	Logger logr.Logger
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

// StreamOptions configure how the node serves Stream-mode Traces: over
// TLS, to readers allowed to get the Trace (pkg/streamserver), a bounded
// number at a time (output.HubOptions).
type StreamOptions struct {
	// BindAddress of the TLS listener (--stream-bind-address, whose
	// default is streamserver.DefaultBindAddress); empty or "0" serves
	// no stream.
	BindAddress string
	// CertDir holds tls.crt and tls.key (--stream-cert-dir); empty: a
	// self-signed certificate generated at start.
	CertDir string
	// MaxClientsPerTrace (--stream-max-clients-per-trace) and MaxClients
	// (--stream-max-clients) cap the clients served at once; 0 means
	// output.DefaultHubMaxClientsPerTrace and DefaultHubMaxClients.
	MaxClientsPerTrace, MaxClients int
}

// ErrNodeName is returned when the node name is missing.
var ErrNodeName = errors.New("the node role needs the node name (--node-name, or NODE_NAME from the downward API)")

// Node is the node role: create it with New, then SetupWithManager.
type Node struct {
	opts    Options
	hub     *output.Hub
	stream  *streamserver.Server // nil without Stream.BindAddress
	tc      *trace.Controller
	store   *store.Store
	fetcher trace.Fetcher
}

// New returns the node role for opts.NodeName.
func New(opts Options) (*Node, error) {
	if opts.NodeName == "" {
		return nil, ErrNodeName
	}
	if opts.ClusterResourceNamespace == "" {
		opts.ClusterResourceNamespace = Namespace()
	}
	hub := output.NewHub(output.HubOptions{MaxClientsPerTrace: opts.Stream.MaxClientsPerTrace, MaxClients: opts.Stream.MaxClients,
		Logger: opts.Logger.WithName("stream")})
	// The Handler's prefix is the path a run's status names, served or
	// not.
	hub.Handler(TracesPath)
	return &Node{opts: opts, hub: hub}, nil
}

// SetStore shares the cluster role's package store and fetcher (one
// process running both roles); nil keeps the node's own, which
// downloads an archive by the digest its package's status records.
func (n *Node) SetStore(st *store.Store, f trace.Fetcher) {
	n.store, n.fetcher = st, f
}

// SetupWithManager adds the Trace controller, the stream listener and
// the hub's stopper to mgr. None of them needs leader election.
func (n *Node) SetupWithManager(mgr manager.Manager) error {
	tc, err := trace.New(trace.Options{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorderFor("gadgetpm-node"), //nolint:staticcheck // the controller takes client-go's recorder
		NodeName: n.opts.NodeName, DataDir: n.opts.DataDir, Store: n.store, Fetcher: n.fetcher, Hub: n.hub,
		FileOutputDir: n.opts.FileOutputDir, CacheGCInterval: n.opts.CacheGCInterval, NodeCheck: n.opts.NodeCheck, Logger: n.opts.Logger.WithName("trace"),
		RepositoryAccess: repoaccess.Policy{ClusterResourceNamespace: n.opts.ClusterResourceNamespace,
			MaxPackageBytes: n.opts.MaxPackageBytes, MaxIndexBytes: n.opts.MaxIndexBytes}, NoCrossNamespaceRefs: n.opts.NoCrossNamespaceRefs,
	})
	if err != nil {
		return fmt.Errorf("set up the node role: %w", err)
	}
	if err := tc.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the node role: %w", err)
	}
	if err := mgr.Add(hubStopper{n.hub}); err != nil {
		return fmt.Errorf("set up the node role: %w", err)
	}
	if addr := n.opts.Stream.BindAddress; addr != "" && addr != "0" {
		srv, err := streamserver.New(mgr.GetConfig(), n.hub.Handler(TracesPath), streamserver.Options{
			BindAddress: n.opts.Stream.BindAddress, CertDir: n.opts.Stream.CertDir, Prefix: TracesPath,
			Logger: n.opts.Logger.WithName("stream"),
		})
		if err != nil {
			return fmt.Errorf("set up the node role: %w", err)
		}
		if err := mgr.Add(srv); err != nil {
			return fmt.Errorf("set up the node role: %w", err)
		}
		n.stream = srv
	}
	n.tc = tc
	return nil
}

// StreamAddr waits until the stream listener listens and returns its
// address; "" when it serves none (or could not listen).
func (n *Node) StreamAddr(ctx context.Context) (string, error) {
	if n.stream == nil {
		return "", nil
	}
	return n.stream.Addr(ctx)
}

// Runs lists the gadget runs loaded on this node, for the dump; nil
// before SetupWithManager.
func (n *Node) Runs() []trace.RunInfo {
	if n.tc == nil {
		return nil
	}
	return n.tc.Runs()
}

// DebugSource is what the node's debug socket dumps: cluster's state
// (debugserver.NoPackages for the node role alone) with the node's name
// and its gadget runs.
func (n *Node) DebugSource(cluster debugserver.Source) debugserver.Source {
	return debugserver.WithNode(debugserver.WithNodeRuns(cluster, n.Runs), n.opts.NodeName)
}

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

// RunOptions configure Run.
type RunOptions struct {
	Options
	// Manager configures the controller manager.
	Manager ManagerOptions
	// DebugSocket is the unix socket of the debug server, which serves
	// the node's dump (its name and gadget runs) to `gadgetpm dump`.
	// Default debugserver.DefaultSocket; "-" serves none.
	DebugSocket string
}

// Run runs the node role alone until ctx ends (cmd/gadgetpm-node): the
// Trace controller in a manager with metrics, probes and the debug
// server, no Lease. It returns nil after a clean stop.
func Run(ctx context.Context, cfg *rest.Config, opts RunOptions) error {
	n, err := New(opts.Options)
	if err != nil {
		return fmt.Errorf("run the node role: %w", err)
	}
	opts.Manager.NodeCache = true
	mgr, err := NewManager(cfg, opts.Manager)
	if err != nil {
		return fmt.Errorf("run the node role: %w", err)
	}
	if err := n.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("run the node role: %w", err)
	}
	if opts.DebugSocket != "-" {
		dbg, err := debugserver.New(debugserver.Options{Path: opts.DebugSocket, Source: n.DebugSource(debugserver.NoPackages{}), Logger: opts.Logger.WithName("debug")})
		if err != nil {
			return fmt.Errorf("run the node role: %w", err)
		}
		if err := mgr.Add(dbg); err != nil {
			return fmt.Errorf("run the node role: add debug server: %w", err)
		}
	}
	opts.Logger.Info("starting", "role", "node", "node", opts.NodeName, "dataDir", opts.DataDir)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run the node role: %w", err)
	}
	opts.Logger.Info("stopped", "role", "node")
	return nil
}
