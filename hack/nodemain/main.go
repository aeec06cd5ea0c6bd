// Command nodemain runs the node role alone: the Trace controller of one
// node in a controller-runtime manager, with the metrics endpoint and
// nothing of the cluster role (no coordinator, no Helm, no hooks, no Lease).
//
// It stands in for cmd/gadgetpm-node in hack/node-footprint.sh until that
// binary exists; it wires pkg/trace the way pkg/process does for the node
// role, with the node role's cache options (trace.CacheOptions).
//
//	go run ./hack/nodemain --kubeconfig k --node-name n --data-dir d
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/pkg/apis"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		kubeconfig, nodeName, dataDir, metricsAddr, probeAddr string
		nodeCheck, slimCache                                  bool
	)
	// a FlagSet of its own: controller-runtime registers --kubeconfig on
	// the global one
	flag := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG, else in-cluster")
	flag.StringVar(&nodeName, "node-name", os.Getenv("NODE_NAME"), "node this process runs Traces for; default $NODE_NAME")
	flag.StringVar(&dataDir, "data-dir", "/var/lib/gadgetpm", "directory for downloaded packages and File outputs")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", `address of the metrics endpoint ("0" disables it)`)
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", `address of /healthz and /readyz ("0" disables them)`)
	flag.BoolVar(&nodeCheck, "node-check", true, "require a Trace's spec.node to name an existing Node")
	flag.BoolVar(&slimCache, "slim-cache", true, "cache with trace.CacheOptions (false: controller-runtime's defaults, to measure what they save)")
	_ = flag.Parse(os.Args[1:]) // ExitOnError
	if nodeName == "" {
		return fmt.Errorf("the node name is required (--node-name or NODE_NAME)")
	}

	log := logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil))
	ctrl.SetLogger(log)
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("reach the cluster: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build scheme: %w", err)
	}
	if err := apis.AddToScheme(scheme); err != nil {
		return fmt.Errorf("build scheme: %w", err)
	}
	var cacheOpts cache.Options
	if slimCache {
		cacheOpts = trace.CacheOptions()
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
	})
	if err != nil {
		return fmt.Errorf("create controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	tc, err := trace.New(trace.Options{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: scheme,
		Recorder: mgr.GetEventRecorderFor("gadgetpm-node"), //nolint:staticcheck // the controller takes client-go's recorder
		NodeName: nodeName, DataDir: dataDir, NodeCheck: nodeCheck, Logger: log.WithName("trace"),
	})
	if err != nil {
		return err
	}
	if err := tc.SetupWithManager(mgr); err != nil {
		return err
	}
	log.Info("starting the node role", "node", nodeName, "dataDir", dataDir)
	return mgr.Start(ctrl.SetupSignalHandler())
}
