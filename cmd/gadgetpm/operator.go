package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gadgetpm/gadgetpm/internal/cmdline"
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/packages/packagerepository"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
	"github.com/gadgetpm/gadgetpm/pkg/process"
)

func newOperatorCommand() *cobra.Command {
	var (
		node cmdline.NodeFlags
		opts process.Options
		role string
		// hookResultSize is --max-hook-result-size; --max-package-size
		// and --max-index-size are node flags (both roles download).
		hookResultSize cmdline.Size
	)
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the operator (its cluster role, its node role, or both) against a cluster",
		Long: `Run the gadgetpm operator. --role says what this process runs:

  all      both roles in one process: for a single-node cluster or trying
           it out (the default)
  cluster  the cluster role: PackageRepositories, GadgetPackages, hooks,
           Helm releases, schedules. With --leader-elect (the default)
           only the holder of the Lease <namespace>/` + process.LeaderElectionID + ` runs it,
           so several replicas may run (a Deployment); --node-name is not
           needed
  node     the node role: the Traces whose spec.node is --node-name (a
           DaemonSet, one per node), on every node whatever the Lease
           says; no Lease, no hooks, no Helm (gadgetpm-node is the same
           role in a binary without the cluster role)

With --leader-elect=false a process with the cluster role refuses to start
while another holds the Lease and has renewed it within its duration.

It serves Prometheus metrics on --metrics-bind-address, /healthz and
/readyz on --health-probe-bind-address, and its state on the debug socket
(read it with 'gadgetpm dump'). The node role serves Stream-mode Traces
over TLS on --stream-bind-address, to readers whose bearer token may get
the Trace (docs/traces.md). SIGTERM or SIGINT stops the services in
order (drift monitors, kube events, cron, event handler, queues; running
tasks get --stop-grace), then releases the Lease, and exits 0. A cluster
role that loses the Lease (not renewed within
--leader-election-renew-deadline, e.g. the API server was unreachable)
stops in the same order, logs one error and exits 1, so that its pod
restarts and rejoins the election.

Hooks reach the API server as --hook-service-account (default
gadgetpm-hooks in the operator's namespace), through a token the operator
requests for each hook with the TokenRequest API and hands over as a
kubeconfig file in $KUBECONFIG: never with the operator's own credentials
(see docs/hooks.md, Credentials).

A GadgetPackage's Helm release and its hooks' object patches act as its
spec.serviceAccountName, else --default-service-account, in the package's
namespace (impersonation: the operator needs impersonate on
serviceaccounts). When both are empty they act with the operator's own
identity, cluster-admin-equivalent with the chart's default RBAC (see
docs/packages.md, Identity).

The log goes to stderr, one entry a line, JSON by default (--log-format
text for a terminal). Every line a hook prints is an entry with the
package, hook, binding, queue, runID and output (stdout or stderr) fields.

The cluster is reached through --kubeconfig, else $KUBECONFIG, else the
in-cluster service account.`,
		Example: `  # the cluster role in a Deployment, the node role in a DaemonSet (see charts/gadgetpm)
  gadgetpm operator --role=cluster
  gadgetpm operator --role=node --node-name=$(NODE_NAME)

  # both roles, against a local cluster, for one namespace
  gadgetpm operator --kubeconfig ~/.kube/config --node-name $(hostname) \
    --namespaces gadget --data-dir /tmp/gadgetpm --debug-socket /tmp/gadgetpm.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cmdline.CheckLogFormat(node.LogFormat); err != nil {
				return err
			}
			if err := cmdline.CheckStream(node.Stream); err != nil {
				return err
			}
			if err := cmdline.CheckCacheGC(node.CacheGCInterval); err != nil {
				return err
			}
			opts.Role, opts.NodeName = process.Role(role), node.NodeName
			if err := opts.Check(); err != nil {
				return err
			}
			log, err := cmdline.NewLogger(cmd.ErrOrStderr(), node.LogFormat, node.Verbosity)
			if err != nil {
				return err
			}
			cmdline.SetProcessLogger(log)
			opts.Logger = log.WithName("gadgetpm")
			cfg, err := cmdline.RestConfig(node.Kubeconfig)
			if err != nil {
				return err
			}
			opts.Namespaces, opts.DataDir = node.Namespaces, node.DataDir
			opts.WatchLabelSelector = node.WatchLabelSelector
			opts.MetricsAddr, opts.ProbeAddr, opts.NodeCheck, opts.FileOutputDir = node.MetricsAddr, node.ProbeAddr, node.NodeCheck, node.FileOutputDir
			opts.DebugSocket, opts.StopGrace = node.DebugSocket, node.StopGrace
			opts.ClusterResourceNamespace, opts.NoCrossNamespaceRefs = node.References.ClusterResourceNamespace, node.References.NoCrossNamespaceRefs
			opts.Stream = node.Stream
			opts.MaxPackageBytes, opts.MaxIndexBytes = int64(node.Downloads.MaxPackageSize), int64(node.Downloads.MaxIndexSize)
			opts.MaxHookResultBytes = int64(hookResultSize)
			opts.CacheGCInterval = node.CacheGCInterval
			opts.Manager = coordinator.ClientOptions{QPS: node.QPS, Burst: node.Burst}
			return process.Run(ctrl.SetupSignalHandler(), cfg, opts)
		},
	}
	cmdline.AddNodeFlags(cmd, &node)
	f := cmd.Flags()
	roles := make([]string, len(process.Roles))
	for i, r := range process.Roles {
		roles[i] = string(r)
	}
	f.StringVar(&role, "role", string(process.RoleAll), "what this process runs: "+strings.Join(roles, ", ")+` ("all": both roles in one process: for a single-node cluster or trying it out)`)
	f.BoolVar(&opts.LeaderElection, "leader-elect", true, "elect the cluster role through a Lease, so that one replica runs it; with --leader-elect=false the cluster role refuses to start while another process holds the Lease (the node role never uses the Lease)")
	f.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the Lease; default the operator's own, or \"default\" outside a cluster")
	f.DurationVar(&opts.LeaseDuration, "leader-election-lease-duration", 15*time.Second, "how long the Lease holds without renewal: how long other replicas wait before taking it over")
	f.DurationVar(&opts.RenewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the holder retries renewing the Lease before it gives the cluster role up (then it stops in order and exits 1); less than the lease duration")
	f.DurationVar(&opts.RetryPeriod, "leader-election-retry-period", 2*time.Second, "interval between attempts to acquire or renew the Lease")
	f.DurationVar(&opts.UnsubscribeTimeout, "unsubscribe-timeout", 30*time.Second, "how long removing a package waits for the nodes to stop its Traces before its Helm release is deleted")
	repositoryFlags(cmd, &opts.RepositoryWorkers)
	f.DurationVar(&opts.DriftInterval, "drift-interval", 4*time.Minute, "how often each package's Helm release is compared with the cluster: missing objects are recreated, and modified ones reported or corrected as the package's spec.driftDetection says (status condition Drifted)")
	hookCredentialFlags(cmd, &opts.HookServiceAccount, &opts.HookTokenExpiry)
	defaultServiceAccountFlag(cmd, &opts.DefaultServiceAccount)
	hookLimitFlags(cmd, &opts.HookLimits)
	hookSandboxFlags(cmd, &opts.HookSandbox, &opts.HookUser, sandbox.On)
	cmdline.HookResultSizeFlag(cmd, &hookResultSize, hooks.DefaultMaxResultFileBytes)
	f.StringVar(&opts.HookSandboxSocket, "hook-sandbox-socket", "", "run hooks through the sandbox server on this unix socket ('gadgetpm hook-sandbox --socket', beside the operator, holding the privileges the sandbox needs) instead of in this process; its --hook-user applies. With --hook-sandbox=off it is not used")
	clientFlags(cmd, "helm", "the Helm release service's client", &opts.Helm, 20, 40)
	clientFlags(cmd, "patcher", "the object patcher's client (hooks' object patches)", &opts.Patcher, 100, 200)
	clientFlags(cmd, "kube-events", "the Kubernetes event monitors' client (hooks' kubernetes bindings)", &opts.KubeEvents, 20, 40)
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

// hookLimitFlags adds the flags of the hooks' memory limits (gadgetpm
// operator and gadgetpm dev); docs/kubeevents.md and docs/hooks.md
// describe them.
func hookLimitFlags(cmd *cobra.Command, l *coordinator.HookLimits) {
	f := cmd.Flags()
	f.IntVar(&l.MaxPendingEventsPerBinding, "max-pending-events-per-binding", hookhost.DefaultMaxPendingEventsPerBinding,
		"most objects whose kube events one binding keeps while its hook's run waits in its queue (events of one object are compacted to the latest); beyond it the binding's pending events become one re-Synchronization with its objects when the run starts; -1: no limit")
	f.IntVar(&l.MaxBindingContextsPerRun, "max-binding-contexts-per-run", hookhost.DefaultMaxBindingContextsPerRun,
		"most binding contexts one hook run gets when queued runs of a hook merge; more go to the next run, none is dropped; -1: no limit")
	f.IntVar(&l.MaxHookMetricSeries, "max-hook-metric-series", hooks.DefaultMaxSeriesPerHook,
		"most metric series (name and label set) one hook of a package keeps; new series beyond it are dropped, counted in gadgetpm_hook_metric_series_dropped_total and logged once, and the run does not fail; -1: no limit")
}

// repositoryFlags adds the flags of PackageRepository syncs (gadgetpm
// operator and gadgetpm dev).
func repositoryFlags(cmd *cobra.Command, workers *int) {
	*workers = packagerepository.DefaultWorkers
	cmd.Flags().Var((*workersFlag)(workers), "repository-workers",
		"how many PackageRepositories sync at once (at least 1); every request of a sync ends at its repository's spec.timeout (default 60s), "+
			"so a repository that never answers holds one worker that long and delays no other")
}

// workersFlag is an int flag of at least 1, refused when parsed so that
// gadgetpm dev says so before it starts a control plane.
type workersFlag int

func (w *workersFlag) String() string { return strconv.Itoa(int(*w)) }
func (w *workersFlag) Type() string   { return "int" }
func (w *workersFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return errors.New("want a whole number of at least 1")
	}
	*w = workersFlag(n)
	return nil
}

// defaultServiceAccountFlag adds --default-service-account (gadgetpm
// operator and gadgetpm dev).
func defaultServiceAccountFlag(cmd *cobra.Command, name *string) {
	cmd.Flags().StringVar(name, "default-service-account", "",
		"service account, in each GadgetPackage's namespace, that a package without spec.serviceAccountName acts as: its Helm release and object patches are made by impersonating it, "+
			"so it gets that account's rights and no more (a package whose account does not exist fails with reason ServiceAccountNotFound). "+
			`"" (the default): such packages act with the operator's own identity, which is cluster-admin-equivalent with the chart's default RBAC`)
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
	cmdline.ClientFlags(cmd, prefix, what, &c.QPS, &c.Burst, qps, burst)
}
