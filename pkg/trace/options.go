package trace

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/pull"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// Defaults of Options.
const (
	// DefaultDuration is how long a generate operation or a scheduled run
	// lasts when spec.duration is empty: the bundled gadgets declare no
	// duration of their own.
	DefaultDuration = 10 * time.Second
	// DefaultProgressInterval is how often a running Trace in Status mode
	// publishes its output and counts.
	DefaultProgressInterval = 2 * time.Second
	// DefaultCollectTimeout bounds one snapshot.
	DefaultCollectTimeout = 30 * time.Second
	// DefaultProgressRate is how many progress writes per second the
	// node's running Traces make together at most.
	DefaultProgressRate = 20
	// DefaultWorkers is how many Traces are reconciled at once.
	DefaultWorkers = 4
	// DefaultHistoryLimit is spec.historyLimit when it is 0.
	DefaultHistoryLimit = 5
)

// Options configure a Controller. Fields marked required must be set; the
// others have the defaults their comments name.
type Options struct {
	// Client is the manager's (cached) client. Required.
	Client client.Client
	// APIReader reads from the API server directly; status writes start
	// from it so that they never build on a stale cache. Required.
	APIReader client.Reader
	// Scheme knows gadgetpm's and the core types. Required.
	Scheme *runtime.Scheme
	// Recorder records Events on Traces; nil records none.
	Recorder record.EventRecorder
	// NodeName is this replica's node. Required.
	NodeName string
	// DataDir is the operator's data directory. The package store is
	// <DataDir>/packages unless Store is set. Required without Store.
	DataDir string
	// Store and Fetcher: where packages are cached by digest and how a
	// missing one is downloaded. Default: a store in <DataDir>/packages
	// and a pull.Puller over it reading with APIReader (it does not link
	// Helm: the node role's binary stays small).
	Store   *store.Store
	Fetcher Fetcher
	// RepositoryAccess is what the default Fetcher may reach and which
	// Secrets it may read (the cluster resource namespace).
	RepositoryAccess repoaccess.Policy
	// NoCrossNamespaceRefs lets spec.gadget name only a GadgetPackage in
	// the Trace's own namespace (--no-cross-namespace-refs): "<ns>/<name>"
	// of another namespace, or a name found only in another, is refused.
	NoCrossNamespaceRefs bool
	// Hub serves Stream mode; its owner stops it. Default: a hub of the
	// controller's own, stopped when the controller stops (and served
	// nowhere: pkg/process passes the one it mounts on its HTTP endpoint).
	Hub *output.Hub
	// FileOutputDir is where File mode writes. Default <DataDir>/traces.
	FileOutputDir string
	// CacheGCInterval (--cache-gc-interval) is how often the cached
	// gadgets and, when the controller opened it, the package store drop
	// the digests no package's status names and nothing uses. Default
	// store.DefaultGCInterval.
	CacheGCInterval time.Duration
	// NodeCheck requires spec.node to name an existing Node (in a
	// cluster). Without it spec.node must equal NodeName (gadgetpm dev,
	// which has no Node objects).
	NodeCheck bool
	// Logger; default logr.Discard().
	Logger logr.Logger
	// Now is the clock; default time.Now. A test seam.
	Now func() time.Time
	// DefaultDuration of generate and of scheduled runs without
	// spec.duration. Default DefaultDuration.
	DefaultDuration time.Duration
	// ProgressInterval between status publications of a running Trace in
	// Status mode. Default DefaultProgressInterval.
	ProgressInterval time.Duration
	// ProgressRate bounds the progress writes of all the node's Traces
	// together, per second. Default DefaultProgressRate.
	ProgressRate float64
	// Workers is the number of Traces reconciled at once. Default
	// DefaultWorkers.
	Workers int
	// CollectTimeout bounds a collect. Default DefaultCollectTimeout.
	CollectTimeout time.Duration
	// ProcRoot is procfs for the enricher; default "/proc".
	ProcRoot string
	// OnRunStarted, when set, is called once a run's gadget is attached
	// (for metrics and benchmarks). It is called with no lock held and
	// must return quickly.
	OnRunStarted func(RunStarted)
}

// Fetcher puts the archive of a package's installed digest
// (status.digest) into the Store, downloading it when the Store lacks it;
// *pull.Puller and *fetch.Fetcher are Fetchers.
type Fetcher interface {
	FetchArchive(ctx context.Context, gp *v1alpha1.GadgetPackage) error
}

var _ Fetcher = (*pull.Puller)(nil)

// RunStarted describes a run whose gadget was just attached.
type RunStarted struct {
	// Trace is "<namespace>/<name>".
	Trace string
	// Op is the operation, or "schedule" for a scheduled run.
	Op string
	// Scheduled is when a scheduled run was due; zero otherwise.
	Scheduled time.Time
	// Started is when the gadget was attached and the run began.
	Started time.Time
}

func (o *Options) setDefaults() (ownHub bool, err error) {
	switch {
	case o.Client == nil || o.APIReader == nil || o.Scheme == nil:
		return false, errors.New("create trace controller: Client, APIReader and Scheme are required")
	case o.NodeName == "":
		return false, errors.New("create trace controller: NodeName is required")
	case o.Store == nil && o.DataDir == "":
		return false, errors.New("create trace controller: DataDir or Store is required")
	}
	if o.Store == nil {
		st, err := store.New(filepath.Join(o.DataDir, "packages"), archive.Limits{})
		if err != nil {
			return false, fmt.Errorf("create trace controller: %w", err)
		}
		o.Store = st
	}
	if o.Fetcher == nil {
		f, err := pull.New(pull.Options{Reader: o.APIReader, Store: o.Store, Access: o.RepositoryAccess})
		if err != nil {
			return false, fmt.Errorf("create trace controller: %w", err)
		}
		o.Fetcher = f
	}
	if o.Hub == nil {
		o.Hub = output.NewHub(output.HubOptions{})
		ownHub = true
	}
	if o.FileOutputDir == "" {
		if o.DataDir == "" {
			return false, errors.New("create trace controller: FileOutputDir or DataDir is required")
		}
		o.FileOutputDir = filepath.Join(o.DataDir, "traces")
	}
	if o.CacheGCInterval <= 0 {
		o.CacheGCInterval = store.DefaultGCInterval
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DefaultDuration <= 0 {
		o.DefaultDuration = DefaultDuration
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.ProgressRate <= 0 {
		o.ProgressRate = DefaultProgressRate
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.CollectTimeout <= 0 {
		o.CollectTimeout = DefaultCollectTimeout
	}
	return ownHub, nil
}
