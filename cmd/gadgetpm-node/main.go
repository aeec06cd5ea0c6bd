// Command gadgetpm-node runs the node role of gadgetpm alone: the Trace
// controller for the Traces whose spec.node is its node, the Stream-mode
// outputs on their TLS listener, metrics, health and readiness probes, the
// node's dump on the debug socket. It is
// `gadgetpm operator --role=node` in a binary that links neither the
// coordinator nor Helm releases, for the node DaemonSet's image; its
// flags are that command's node-role flags, with the same names and
// defaults.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gadgetpm/gadgetpm/internal/cmdline"
	"github.com/gadgetpm/gadgetpm/pkg/noderole"
)

func main() {
	if err := newCommand(os.Stdout, os.Stderr, cmdline.SetProcessLogger).ExecuteContext(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

// newCommand returns the command; setLogger installs the process's
// logger (cmdline.SetProcessLogger in main; klog's is not safe to set
// while a test's clients run).
func newCommand(stdout, stderr io.Writer, setLogger func(logr.Logger)) *cobra.Command {
	var n cmdline.NodeFlags
	cmd := &cobra.Command{
		Use:   "gadgetpm-node",
		Short: "Run gadgetpm's node role: the Traces of one node",
		Long: `Run gadgetpm's node role for --node-name: the Traces whose spec.node is
this node, their Stream-mode outputs over TLS on --stream-bind-address
(/traces/<namespace>/<name>, to readers whose bearer token may get the
Trace), Prometheus metrics, /healthz and /readyz, and the node's dump
(its name and gadget runs) on --debug-socket: read it with 'gadgetpm
dump --socket'. It never uses the cluster role's Lease and runs no hooks
and no Helm releases: it is 'gadgetpm operator --role=node' in a smaller
binary, with the same flags and defaults.

SIGTERM or SIGINT stops the node's gadget runs and exits 0.

The cluster is reached through --kubeconfig, else $KUBECONFIG, else the
in-cluster service account.`,
		Example: `  # in the node DaemonSet (see charts/gadgetpm)
  gadgetpm-node --node-name=$(NODE_NAME)`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n.NodeName == "" {
				return noderole.ErrNodeName
			}
			if err := cmdline.CheckLogFormat(n.LogFormat); err != nil {
				return err
			}
			if err := cmdline.CheckStream(n.Stream); err != nil {
				return err
			}
			if err := cmdline.CheckCacheGC(n.CacheGCInterval); err != nil {
				return err
			}
			log, err := cmdline.NewLogger(cmd.ErrOrStderr(), n.LogFormat, n.Verbosity)
			if err != nil {
				return err
			}
			setLogger(log)
			cfg, err := cmdline.RestConfig(n.Kubeconfig)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			logger := log.WithName("gadgetpm")
			return noderole.Run(ctx, cfg, noderole.RunOptions{
				Options: noderole.Options{NodeName: n.NodeName, DataDir: n.DataDir, FileOutputDir: n.FileOutputDir,
					NodeCheck: n.NodeCheck, Stream: n.Stream, Logger: logger,
					ClusterResourceNamespace: n.References.ClusterResourceNamespace, NoCrossNamespaceRefs: n.References.NoCrossNamespaceRefs,
					MaxPackageBytes: int64(n.Downloads.MaxPackageSize), MaxIndexBytes: int64(n.Downloads.MaxIndexSize), CacheGCInterval: n.CacheGCInterval},
				Manager: noderole.ManagerOptions{Namespaces: n.Namespaces, WatchLabelSelector: n.WatchLabelSelector, MetricsAddr: n.MetricsAddr, ProbeAddr: n.ProbeAddr,
					QPS: n.QPS, Burst: n.Burst, ShutdownTimeout: n.StopGrace + 20*time.Second, Logger: logger},
				DebugSocket: n.DebugSocket,
			})
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmdline.AddNodeFlags(cmd, &n)
	return cmd
}
