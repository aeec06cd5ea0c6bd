package cmdline

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/noderole"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// NodeFlags are the node role's flags: `gadgetpm operator` and
// gadgetpm-node take them with the same names and defaults.
type NodeFlags struct {
	Kubeconfig    string
	Namespaces    []string
	DataDir       string
	NodeName      string
	MetricsAddr   string
	ProbeAddr     string
	NodeCheck     bool
	FileOutputDir string
	// Stream is the listener of Stream-mode Traces (--stream-*).
	Stream noderole.StreamOptions
	// QPS and Burst of the controller manager's client (--kube-api-qps,
	// --kube-api-burst).
	QPS   float32
	Burst int
	// Verbosity (-v) and LogFormat (--log-format) of the log.
	Verbosity int
	LogFormat string
	// DebugSocket of the debug server ("-" disables it).
	DebugSocket string
	// StopGrace bounds the stop: running tasks' (the cluster role) and
	// the gadget runs' (the node role, plus a margin for their outcome
	// to reach status).
	StopGrace time.Duration
	// References: --cluster-resource-namespace and
	// --no-cross-namespace-refs (ReferenceFlags).
	References References
	// Downloads: --max-package-size and --max-index-size (DownloadFlags).
	Downloads Downloads
	// CacheGCInterval is --cache-gc-interval (CacheGCFlag).
	CacheGCInterval time.Duration
	// WatchLabelSelector is --watch-label-selector: the shard of
	// GadgetPackages, PackageRepositories and Traces this process
	// reconciles.
	WatchLabelSelector string
}

// CacheGCFlag registers --cache-gc-interval on cmd (`gadgetpm operator`,
// `gadgetpm dev`, gadgetpm-node); docs/packages.md describes it.
func CacheGCFlag(cmd *cobra.Command, d *time.Duration) {
	cmd.Flags().DurationVar(d, "cache-gc-interval", store.DefaultGCInterval,
		"how often the package store (<data-dir>/packages) and the node's cache of loaded gadgets drop the package digests no GadgetPackage's status names, at start and then at this interval; "+
			"a digest a running package, a running Trace or a download in flight uses is kept, and so is one written within the last interval (a package being installed)")
}

// References are the flags that bound what resources may reference
// across namespaces; `gadgetpm operator`, `gadgetpm dev` and
// gadgetpm-node take them.
type References struct {
	// ClusterResourceNamespace is where PackageRepositories' Secrets are
	// read from; "" means the operator's own namespace.
	ClusterResourceNamespace string
	// NoCrossNamespaceRefs lets a Trace name only a GadgetPackage of its
	// own namespace.
	NoCrossNamespaceRefs bool
}

// ReferenceFlags registers --cluster-resource-namespace and
// --no-cross-namespace-refs on cmd.
func ReferenceFlags(cmd *cobra.Command, r *References) {
	cmd.Flags().StringVar(&r.ClusterResourceNamespace, "cluster-resource-namespace", "",
		"the one namespace PackageRepositories (cluster-scoped) read their Secrets from (spec.secretRef, spec.verify.keyringSecretRef); "+
			"a PackageRepository naming another namespace is refused (Ready=False, reason SecretNamespaceNotAllowed). Both roles read them: give the cluster and node roles the same value. "+
			`Default the operator's namespace ($POD_NAMESPACE, else the in-cluster one, else "default")`)
	cmd.Flags().BoolVar(&r.NoCrossNamespaceRefs, "no-cross-namespace-refs", false,
		"a Trace's spec.gadget may name only a GadgetPackage in the Trace's own namespace; "+
			"\"<namespace>/<name>\" of another namespace, or a name found only in another, is refused (status.operationError and a Warning Event)")
}

// AddNodeFlags registers n's flags on cmd.
func AddNodeFlags(cmd *cobra.Command, n *NodeFlags) {
	f := cmd.Flags()
	f.StringVar(&n.Kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG, else in-cluster")
	f.StringSliceVar(&n.Namespaces, "namespaces", nil, "namespaces whose GadgetPackages and Traces are watched (comma-separated); default all")
	f.StringVar(&n.WatchLabelSelector, "watch-label-selector", "", "reconcile only the GadgetPackages, PackageRepositories and Traces this label selector matches, "+
		"to run several gadgetpm instances in one cluster, each on its shard (e.g. "+apis.ShardKey+"=shard1; "+
		"!"+apis.ShardKey+" for the objects of no shard); give the cluster and node roles the same value. Default all of them")
	f.StringVar(&n.DataDir, "data-dir", "/var/lib/gadgetpm", "directory for downloaded packages")
	f.StringVar(&n.NodeName, "node-name", os.Getenv("NODE_NAME"), "node this replica runs on; default $NODE_NAME (required by the node role)")
	f.StringVar(&n.MetricsAddr, "metrics-bind-address", ":8080", `address of the metrics endpoint ("0" disables it)`)
	f.StringVar(&n.ProbeAddr, "health-probe-bind-address", ":8081", `address of /healthz and /readyz ("0" disables them)`)
	f.BoolVar(&n.NodeCheck, "node-check", true, "require a Trace's spec.node to name an existing Node; with --node-check=false spec.node must equal --node-name (a cluster without Node objects)")
	f.StringVar(&n.FileOutputDir, "trace-output-dir", "", "directory where Traces with outputMode File write their JSON lines; default <data-dir>/traces")
	StreamFlags(cmd, &n.Stream, streamserver.DefaultBindAddress)
	ClientFlags(cmd, "kube-api", "the controller manager's client", &n.QPS, &n.Burst, 20, 30)
	f.IntVarP(&n.Verbosity, "v", "v", 0, "log verbosity: 0 info, 1 debug (Helm's output, every patch), 2 and more trace")
	f.StringVar(&n.LogFormat, "log-format", FormatJSON, logFormatUsage)
	f.StringVar(&n.DebugSocket, "debug-socket", debugserver.DefaultSocket, `unix socket of the debug server ("-" disables it)`)
	f.DurationVar(&n.StopGrace, "stop-grace", 30*time.Second, "how long running tasks may take on shutdown before they are cancelled (the node role's stop of its gadget runs gets it plus 20s)")
	ReferenceFlags(cmd, &n.References)
	DownloadFlags(cmd, &n.Downloads)
	CacheGCFlag(cmd, &n.CacheGCInterval)
}

// StreamFlags registers the --stream-* flags of s, with defAddr the
// default listener address.
func StreamFlags(cmd *cobra.Command, s *noderole.StreamOptions, defAddr string) {
	f := cmd.Flags()
	f.StringVar(&s.BindAddress, "stream-bind-address", defAddr, "address of the TLS listener serving Stream-mode Traces at "+noderole.TracesPath+
		`<namespace>/<name>, to readers whose bearer token (TokenReview) may get that Trace (SubjectAccessReview); "0" disables it`)
	f.StringVar(&s.CertDir, "stream-cert-dir", "", "directory holding "+streamserver.CertFile+" and "+streamserver.KeyFile+
		" (PEM, such as a mounted kubernetes.io/tls Secret; re-read when they change) for the stream listener; default a self-signed certificate generated at start, which clients cannot verify")
	f.IntVar(&s.MaxClientsPerTrace, "stream-max-clients-per-trace", output.DefaultHubMaxClientsPerTrace,
		"how many readers one Trace's stream serves at once; one more gets 429 Too Many Requests")
	f.IntVar(&s.MaxClients, "stream-max-clients", output.DefaultHubMaxClients,
		"how many stream readers this process serves at once, all Traces together; one more gets 429 Too Many Requests")
}

// MinCacheGCInterval is the shortest --cache-gc-interval: each
// collection lists every GadgetPackage.
const MinCacheGCInterval = time.Second

// CheckCacheGC refuses a --cache-gc-interval below MinCacheGCInterval.
func CheckCacheGC(d time.Duration) error {
	if d < MinCacheGCInterval {
		return fmt.Errorf("--cache-gc-interval %s: want at least %s (how often the package store and the gadget cache are collected; default %s)", d, MinCacheGCInterval, store.DefaultGCInterval)
	}
	return nil
}

// CheckStream refuses a cap of the --stream-* flags below 1.
func CheckStream(s noderole.StreamOptions) error {
	for _, c := range []struct {
		flag string
		v    int
	}{{"--stream-max-clients-per-trace", s.MaxClientsPerTrace}, {"--stream-max-clients", s.MaxClients}} {
		if c.v < 1 {
			return fmt.Errorf("%s %d: want at least 1 (the readers served at once)", c.flag, c.v)
		}
	}
	return nil
}

// ClientFlags registers --<prefix>-qps and --<prefix>-burst, the rate
// limits of what's client.
func ClientFlags(cmd *cobra.Command, prefix, what string, qps *float32, burst *int, defQPS float32, defBurst int) {
	cmd.Flags().Float32Var(qps, prefix+"-qps", defQPS, "queries per second of "+what)
	cmd.Flags().IntVar(burst, prefix+"-burst", defBurst, "burst of "+what)
}

// RestConfig reaches the cluster through kubeconfig, else $KUBECONFIG,
// else the in-cluster service account.
func RestConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("reach the cluster: %w (pass --kubeconfig or set KUBECONFIG)", err)
	}
	return cfg, nil
}
