package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
	"github.com/gadgetpm/gadgetpm/pkg/process"
)

func newOperatorCommand() *cobra.Command {
	var (
		kubeconfig string
		opts       process.Options
		verbosity  int
		logFormat  *string
	)
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the operator (both roles) against a cluster",
		Long: `Run the gadgetpm operator: every replica runs the node role (the Traces
whose spec.node is --node-name); the replica holding the Lease ` + process.LeaderElectionID + `
also runs the cluster role (PackageRepositories, GadgetPackages, hooks,
Helm releases, schedules).

It serves Prometheus metrics on --metrics-bind-address, /healthz and
/readyz on --health-probe-bind-address, and its state on the debug socket
(read it with 'gadgetpm dump'). SIGTERM or SIGINT stops the services in
order (drift monitors, kube events, cron, event handler, queues; running
tasks get --stop-grace) and exits 0.

Hooks reach the API server as --hook-service-account (default
gadgetpm-hooks in the operator's namespace), through a token the operator
requests for each hook with the TokenRequest API and hands over as a
kubeconfig file in $KUBECONFIG: never with the operator's own credentials
(see docs/hooks.md, Credentials).

The log goes to stderr, one entry a line, JSON by default (--log-format
text for a terminal). Every line a hook prints is an entry with the
package, hook, binding, queue, runID and output (stdout or stderr) fields.

The cluster is reached through --kubeconfig, else $KUBECONFIG, else the
in-cluster service account.`,
		Example: `  # in a DaemonSet (see charts/gadgetpm)
  gadgetpm operator --node-name=$(NODE_NAME) --leader-elect

  # against a local cluster, for one namespace
  gadgetpm operator --kubeconfig ~/.kube/config --node-name $(hostname) \
    --namespaces gadget --data-dir /tmp/gadgetpm --debug-socket /tmp/gadgetpm.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), *logFormat, verbosity)
			if err != nil {
				return err
			}
			ctrl.SetLogger(log)
			opts.Logger = log.WithName("gadgetpm")
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			return process.Run(ctrl.SetupSignalHandler(), cfg, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG, else in-cluster")
	f.StringSliceVar(&opts.Namespaces, "namespaces", nil, "namespaces whose GadgetPackages and Traces are watched (comma-separated); default all")
	f.StringVar(&opts.DataDir, "data-dir", "/var/lib/gadgetpm", "directory for downloaded packages")
	f.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "node this replica runs on; default $NODE_NAME")
	f.StringVar(&opts.DebugSocket, "debug-socket", debugserver.DefaultSocket, `unix socket of the debug server ("-" disables it)`)
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", `address of the metrics endpoint ("0" disables it)`)
	f.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", `address of /healthz and /readyz ("0" disables them)`)
	f.BoolVar(&opts.LeaderElection, "leader-elect", false, "elect a leader through a Lease, so only one replica runs the cluster role")
	f.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the Lease; default the operator's own, or \"default\" outside a cluster")
	f.DurationVar(&opts.StopGrace, "stop-grace", 30*time.Second, "how long running tasks may take on shutdown before they are cancelled")
	f.BoolVar(&opts.NodeCheck, "node-check", true, "require a Trace's spec.node to name an existing Node; with --node-check=false spec.node must equal --node-name (a cluster without Node objects)")
	f.StringVar(&opts.FileOutputDir, "trace-output-dir", "", "directory where Traces with outputMode File write their JSON lines; default <data-dir>/traces")
	f.DurationVar(&opts.UnsubscribeTimeout, "unsubscribe-timeout", 30*time.Second, "how long removing a package waits for the nodes to stop its Traces before its Helm release is deleted")
	hookCredentialFlags(cmd, &opts.HookServiceAccount, &opts.HookTokenExpiry)
	hookSandboxFlags(cmd, &opts.HookSandbox, &opts.HookUser, sandbox.On)
	f.StringVar(&opts.HookSandboxSocket, "hook-sandbox-socket", "", "run hooks through the sandbox server on this unix socket ('gadgetpm hook-sandbox --socket', beside the operator, holding the privileges the sandbox needs) instead of in this process; its --hook-user applies. With --hook-sandbox=off it is not used")
	clientFlags(cmd, "kube-api", "the controller manager's client", &opts.Manager, 20, 30)
	clientFlags(cmd, "helm", "the Helm release service's client", &opts.Helm, 20, 40)
	clientFlags(cmd, "patcher", "the object patcher's client (hooks' object patches)", &opts.Patcher, 100, 200)
	clientFlags(cmd, "kube-events", "the Kubernetes event monitors' client (hooks' kubernetes bindings)", &opts.KubeEvents, 20, 40)
	f.IntVarP(&verbosity, "v", "v", 0, "log verbosity: 0 info, 1 debug (Helm's output, every patch), 2 and more trace")
	logFormat = logFlags(cmd, logFormatJSON)
	return cmd
}

// hookCredentialFlags adds the flags of the hooks' own API credentials
// (gadgetpm operator and gadgetpm dev).
func hookCredentialFlags(cmd *cobra.Command, serviceAccount *string, expiry *time.Duration) {
	cmd.Flags().StringVar(serviceAccount, "hook-service-account", hookcreds.DefaultServiceAccount,
		"service account, in the operator's namespace ($POD_NAMESPACE, else the in-cluster one, else \"default\"), whose short-lived tokens hooks get as a kubeconfig file in $KUBECONFIG; "+
			"the operator needs create on its serviceaccounts/token. \"\" gives hooks the operator's own KUBECONFIG or in-cluster credentials, and so its identity and rights")
	cmd.Flags().DurationVar(expiry, "hook-token-expiry", hookcreds.DefaultExpiry,
		"lifetime of each hook token (at least 10m, the TokenRequest API's minimum); a new one is issued after 80% of it, so a hook starts with at least a fifth left")
}

// hookSandboxFlags adds --hook-sandbox (default def) and --hook-user.
func hookSandboxFlags(cmd *cobra.Command, mode *sandbox.Mode, user *sandbox.User, def sandbox.Mode) {
	*mode, *user = def, sandbox.DefaultUser()
	cmd.Flags().Var(mode, "hook-sandbox", "run hooks (and their --config) sandboxed: in their own PID and mount namespaces, as --hook-user with no_new_privs, "+
		"their package read-only, their run directory the one place they may write, the operator's token, debug socket, data directory and other packages hidden. "+
		"on refuses to start without the privileges it needs (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID; seccomp allowing namespaces); "+
		"auto then logs a warning and runs hooks as off does; off runs them as the operator's user, without namespaces")
	cmd.Flags().Var(user, "hook-user", "uid:gid sandboxed hooks run as, with no supplementary groups (numbers; not root)")
}

func clientFlags(cmd *cobra.Command, prefix, what string, c *coordinator.ClientOptions, qps float32, burst int) {
	cmd.Flags().Float32Var(&c.QPS, prefix+"-qps", qps, "queries per second of "+what)
	cmd.Flags().IntVar(&c.Burst, prefix+"-burst", burst, "burst of "+what)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
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
