package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLeaseLost is returned by Run when the cluster role lost the Lease:
// it stopped in order, and the process should exit non-zero so that it
// restarts and rejoins the election.
var ErrLeaseLost = errors.New("lost the Lease")

// elected runs the cluster role while this process holds the Lease. It
// runs in the process's manager without leader election of its own
// (controller-runtime's would exit on a loss without the ordered stop,
// and release the Lease before the cluster role stopped): the cluster
// role stops in order first, the Lease is released after.
type elected struct {
	lease    string // <namespace>/<name>, for the log
	identity string
	config   leaderelection.LeaderElectionConfig // without Callbacks
	// run runs the cluster role until its context ends, then stops it in
	// order.
	run func(context.Context) error
	log logr.Logger
}

// newElected returns the runnable electing the cluster role through the
// Lease opts.LeaderElectionNamespace/LeaderElectionID.
func newElected(cfg *rest.Config, opts Options, run func(context.Context) error) (*elected, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	id := host + "_" + string(uuid.NewUUID())
	return &elected{
		lease:    opts.LeaderElectionNamespace + "/" + LeaderElectionID,
		identity: id,
		config: leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: opts.LeaderElectionNamespace, Name: LeaderElectionID},
				Client:     cs.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: id},
			},
			LeaseDuration:   opts.LeaseDuration,
			RenewDeadline:   opts.RenewDeadline,
			RetryPeriod:     opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            LeaderElectionID,
		},
		run: run,
		log: opts.Logger.WithName("lease"),
	}, nil
}

// NeedLeaderElection is false: the election is this runnable's own job.
func (e *elected) NeedLeaderElection() bool { return false }

// Start campaigns for the Lease until ctx ends or the Lease is lost.
// Holding it, it runs the cluster role; when ctx ends it stops the
// cluster role in order, then releases the Lease, and returns nil. When
// the Lease is lost it stops the cluster role in order, logs one error
// and returns ErrLeaseLost.
func (e *elected) Start(ctx context.Context) error {
	var (
		mu       sync.Mutex
		leading  bool // guarded by mu
		stopping bool // guarded by mu
		runDone  = make(chan error, 1)
	)
	cfg := e.config
	cfg.Callbacks = leaderelection.LeaderCallbacks{
		OnStartedLeading: func(lctx context.Context) {
			mu.Lock()
			if stopping {
				mu.Unlock()
				return
			}
			leading = true
			mu.Unlock()
			// a loss cancels lctx; a stop of the process cancels ctx
			runCtx, cancel := context.WithCancel(lctx)
			defer cancel()
			defer context.AfterFunc(ctx, cancel)()
			e.log.Info("acquired the Lease: starting the cluster role", "lease", e.lease, "identity", e.identity)
			runDone <- e.run(runCtx)
		},
		OnStoppedLeading: func() {},
		OnNewLeader: func(id string) {
			if id != e.identity {
				e.log.Info("the cluster role runs elsewhere", "lease", e.lease, "holder", id)
			}
		},
	}
	le, err := leaderelection.NewLeaderElector(cfg)
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	// The elector's context ends only once the cluster role has stopped:
	// ReleaseOnCancel must not hand the Lease over while hooks still run.
	electCtx, stopElect := context.WithCancel(context.Background())
	defer stopElect()
	elDone := make(chan struct{})
	go func() {
		defer close(elDone)
		le.Run(electCtx)
	}()
	e.log.Info("campaigning for the Lease", "lease", e.lease, "identity", e.identity)
	select {
	case <-ctx.Done():
	case <-elDone:
	}
	mu.Lock()
	stopping = true
	wasLeading := leading
	mu.Unlock()
	var runErr error
	if wasLeading {
		runErr = <-runDone
	}
	stopElect()
	<-elDone
	if ctx.Err() != nil {
		if runErr != nil {
			return fmt.Errorf("cluster role: %w", runErr)
		}
		if wasLeading {
			e.log.Info("cluster role stopped; Lease released", "lease", e.lease)
		}
		return nil
	}
	// le.Run returned on its own: the Lease was not renewed in time.
	e.log.Error(runErr, "lost the Lease: the cluster role stopped in order; exiting so that the process restarts and rejoins the election",
		"lease", e.lease, "identity", e.identity, "holder", le.GetLeader())
	return fmt.Errorf("%w %s (now held by %q): the cluster role stopped in order", ErrLeaseLost, e.lease, le.GetLeader())
}

// checkLeaseFree refuses to run the cluster role without leader election
// while another process holds the Lease: two cluster roles at once would
// run every hook and Helm release twice.
func checkLeaseFree(ctx context.Context, cfg *rest.Config, ns string, now time.Time) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("check the Lease %s/%s: %w", ns, LeaderElectionID, err)
	}
	l, err := cs.CoordinationV1().Leases(ns).Get(ctx, LeaderElectionID, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("check that no other cluster role holds the Lease %s/%s: %w", ns, LeaderElectionID, err)
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder == "" || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return nil
	}
	expires := l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	if !now.Before(expires) {
		return nil
	}
	return fmt.Errorf("the Lease %s/%s is held by %q until %s: another gadgetpm cluster role is running; stop it, or run this one with --leader-elect (the default) so that only the Lease holder runs the cluster role",
		ns, LeaderElectionID, holder, expires.UTC().Format(time.RFC3339))
}
