package process

import (
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
	"github.com/gadgetpm/gadgetpm/pkg/noderole"
)

// Role says which parts of the operator a process runs.
type Role string

// The roles of --role.
const (
	// RoleAll runs both roles in one process: for a single-node cluster
	// or trying it out (gadgetpm dev).
	RoleAll Role = "all"
	// RoleCluster runs the coordinator and the GadgetPackage and
	// PackageRepository controllers, on the Lease holder only.
	RoleCluster Role = "cluster"
	// RoleNode runs the Trace controller of one node, the Stream hub,
	// probes and metrics; no coordinator, no Lease.
	RoleNode Role = "node"
)

// Roles are the values --role accepts.
var Roles = []Role{RoleAll, RoleCluster, RoleNode}

func (r Role) cluster() bool { return r == RoleAll || r == RoleCluster }
func (r Role) node() bool    { return r == RoleAll || r == RoleNode }

// Options configure Run, the operator process.
type Options struct {
	// Role is what the process runs; default RoleAll.
	Role Role
	// Namespaces whose GadgetPackages and Traces are watched; empty means
	// every namespace.
	Namespaces []string
	// WatchLabelSelector limits the GadgetPackages, PackageRepositories
	// and Traces both roles reconcile to those it matches
	// (--watch-label-selector; apis.ShardKey); empty means all.
	WatchLabelSelector string
	// DataDir holds downloaded packages and the extraction cache.
	// Default /var/lib/gadgetpm.
	DataDir string
	// NodeName is the node this replica runs on (the node role reconciles
	// the Traces whose spec.node is this node). Required with the node
	// role (RoleNode, RoleAll).
	NodeName string
	// DebugSocket is the unix socket of the debug server (mode 0600).
	// Default debugserver.DefaultSocket; "-" disables the debug server.
	DebugSocket string
	// MetricsAddr serves Prometheus metrics; "0" disables it.
	// Default ":8080".
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "0" disables it.
	// Default ":8081".
	ProbeAddr string
	// LeaderElection makes only the Lease holder run the cluster role.
	// Without it, Run refuses to start the cluster role while another
	// process holds the Lease.
	LeaderElection bool
	// LeaseDuration, RenewDeadline and RetryPeriod time the election
	// (client-go's leaderelection); defaults 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// LeaderElectionNamespace holds the Lease; default the namespace the
	// operator runs in, or "default" out of cluster.
	LeaderElectionNamespace string
	// Manager, Helm, Patcher and KubeEvents are the rate limits of the
	// controller manager's client, the Helm release service, the object
	// patcher and the Kubernetes event monitors.
	Manager, Helm, Patcher, KubeEvents coordinator.ClientOptions
	// StopGrace bounds how long running tasks may take on shutdown before
	// they are cancelled. Default 30s.
	StopGrace time.Duration
	// NodeCheck requires a Trace's spec.node to name an existing Node (in
	// a cluster). Without it, spec.node must equal NodeName (gadgetpm dev,
	// which has no Node objects). gadgetpm operator turns it on.
	NodeCheck bool
	// FileOutputDir is where Traces in File mode write; default
	// <DataDir>/traces.
	FileOutputDir string
	// ClusterResourceNamespace is the one namespace PackageRepositories'
	// Secrets (spec.secretRef, spec.verify.keyringSecretRef) are read
	// from, by both roles; a Secret of any other namespace is refused.
	// Default Namespace(), the operator's own.
	ClusterResourceNamespace string
	// DriftInterval (--drift-interval) is how often each release's drift
	// monitor compares its objects with its manifest; default nelm's, 4m.
	DriftInterval time.Duration
	// RepositoryWorkers is how many PackageRepositories sync at once
	// (each request of a sync ends at the repository's spec.timeout);
	// default packagerepository.DefaultWorkers.
	RepositoryWorkers int
	// NoCrossNamespaceRefs lets a Trace's spec.gadget name only a
	// GadgetPackage in the Trace's own namespace (the node role).
	NoCrossNamespaceRefs bool
	// MaxPackageBytes and MaxIndexBytes cap what a repository may send,
	// to both roles: one package archive (an OCI chart layer by its
	// descriptor, before the pull) and one index.yaml or OCI manifest
	// (--max-package-size, --max-index-size). MaxHookResultBytes caps
	// each result file of a hook run (--max-hook-result-size). Zero: the
	// defaults (download.DefaultMaxPackageBytes,
	// download.DefaultMaxIndexBytes, hooks.DefaultMaxResultFileBytes).
	MaxPackageBytes, MaxIndexBytes, MaxHookResultBytes int64
	// CacheGCInterval (--cache-gc-interval) is how often the package
	// store and the node's gadget cache drop the digests no
	// GadgetPackage's status names and nothing uses (also at start);
	// zero: store.DefaultGCInterval.
	CacheGCInterval time.Duration
	// Stream is where and to how many readers the node role serves
	// Stream-mode Traces (over TLS, to readers allowed to get the
	// Trace). Its zero value serves none; gadgetpm operator's
	// --stream-bind-address defaults to :8443.
	Stream noderole.StreamOptions
	// HookServiceAccount names the service account, in the operator's
	// own namespace (Namespace), whose short-lived tokens hooks get as a
	// kubeconfig in KUBECONFIG (pkg/hookcreds). Empty: hooks get the
	// operator's own KUBECONFIG or in-cluster environment, and so its
	// identity and rights. gadgetpm operator and dev default to
	// hookcreds.DefaultServiceAccount.
	HookServiceAccount string
	// HookTokenExpiry is the lifetime of each hook token; default and
	// minimum hookcreds.DefaultExpiry.
	HookTokenExpiry time.Duration
	// DefaultServiceAccount is the ServiceAccount, in a package's
	// namespace, that a GadgetPackage without spec.serviceAccountName acts
	// as (impersonation). Empty: such packages act with the operator's own
	// identity, which is cluster-admin-equivalent with the chart's
	// default RBAC.
	DefaultServiceAccount string
	// UnsubscribeTimeout bounds how long removing a package waits for the
	// nodes to stop its Traces (status.subscriptions empty) before its
	// Helm release is deleted; default 30s.
	UnsubscribeTimeout time.Duration
	// HookLimits bound pending kube events, binding contexts per run and
	// hook metric series (--max-pending-events-per-binding,
	// --max-binding-contexts-per-run, --max-hook-metric-series); zero
	// values mean the defaults.
	HookLimits coordinator.HookLimits
	// HookSandbox says whether hooks run sandboxed (own PID and mount
	// namespaces, HookUser, none of the operator's files): on, off or
	// auto. Default (empty) off; gadgetpm operator defaults to on,
	// gadgetpm dev to auto.
	HookSandbox sandbox.Mode
	// HookUser is the uid:gid sandboxed hooks run as; default
	// sandbox.DefaultUser() (65534:65534).
	HookUser sandbox.User
	// HookSandboxSocket, with HookSandbox on or auto, runs hooks through
	// the sandbox server on this unix socket (gadgetpm hook-sandbox)
	// instead of in this process's own sandbox; the server's --hook-user
	// applies. Empty: none.
	HookSandboxSocket string
	// Registerer takes the cluster role's metrics (queues, hooks, Helm);
	// default controller-runtime's registry, which the metrics endpoint
	// serves. A test running several processes in one binary passes its
	// own.
	Registerer prometheus.Registerer
	// Logger; default controller-runtime's.
	Logger logr.Logger
}

// roleList is "all, cluster, node".
func roleList() string {
	s := make([]string, len(Roles))
	for i, r := range Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
