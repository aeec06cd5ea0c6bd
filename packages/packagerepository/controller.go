package packagerepository

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// Status bounds, matching the CRD's MaxItems.
const (
	MaxPackages        = 500
	MaxVersions        = 20
	DefaultInterval    = 10 * time.Minute
	maxMessageProblems = 3
	// DefaultWorkers is how many repositories sync at once.
	DefaultWorkers = 4
	// maxRetry caps the retry backoff of a failing repository whose
	// interval is shorter.
	maxRetry = time.Minute
)

// ReasonTimeout: a request of the sync got no answer within spec.timeout.
const ReasonTimeout = "Timeout"

// EventRecorder records Kubernetes Events; client-go's record.EventRecorder
// satisfies it.
type EventRecorder interface {
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...interface{})
}

// Reconciler syncs PackageRepositories.
type Reconciler struct {
	// Client reads PackageRepositories, Secrets and GadgetPackages and
	// writes status.
	Client client.Client
	// Recorder, when set, receives an Event per failed or changed sync.
	Recorder EventRecorder
	// Access is what repositories may reach and which Secrets they may
	// read (the cluster resource namespace). Required.
	Access repoaccess.Policy
	// Workers is how many repositories sync at once, so that a slow one
	// holds up only itself; default DefaultWorkers.
	Workers int
	// now is the clock; time.Now when nil.
	now func() time.Time

	mu sync.Mutex
	// failures counts each repository's consecutive failed syncs of its
	// current generation, for the retry backoff; guarded by mu.
	failures map[string]failures
}

type failures struct {
	generation int64
	count      int
}

var _ reconcile.Reconciler = &Reconciler{}

// SetupWithManager registers the controller. It also resyncs an oci://
// repository when a GadgetPackage naming it changes, since only then does
// it know which packages to list.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("packagerepository").
		For(&v1alpha1.PackageRepository{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.workers()}).
		Watches(&v1alpha1.GadgetPackage{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				gp, ok := o.(*v1alpha1.GadgetPackage)
				if !ok || gp.Spec.Repository == "" {
					return nil
				}
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: gp.Spec.Repository}}}
			})).
		Complete(r)
}

func (r *Reconciler) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return DefaultWorkers
}

// retryAfter is when a failing repository syncs again: after its
// interval or a minute, whichever is shorter, doubling with each
// consecutive failure of the same generation up to the longer of the two.
func (r *Reconciler) retryAfter(pr *v1alpha1.PackageRepository, interval time.Duration) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures == nil {
		r.failures = map[string]failures{}
	}
	f := r.failures[pr.Name]
	if f.generation != pr.Generation {
		f = failures{generation: pr.Generation}
	}
	f.count++
	r.failures[pr.Name] = f
	retry, limit := min(interval, maxRetry), max(interval, maxRetry)
	for i := 1; i < f.count && retry < limit; i++ {
		retry *= 2
	}
	return min(retry, limit)
}

// succeeded resets the backoff of pr.
func (r *Reconciler) succeeded(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failures, name)
}

func (r *Reconciler) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// Reconcile reads one repository's index and writes its status. A sync
// failure is reported in status, not returned, and retried at the next
// interval (or after a minute if the interval is longer).
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pr v1alpha1.PackageRepository
	if err := r.Client.Get(ctx, req.NamespacedName, &pr); err != nil {
		if apierrors.IsNotFound(err) {
			r.succeeded(req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	logger := log.FromContext(ctx).WithValues("repository", pr.Name)
	interval := pr.Spec.Interval.Duration
	if interval <= 0 {
		interval = DefaultInterval
	}
	before := pr.DeepCopy()
	pr.Status.ObservedGeneration = pr.Generation

	if pr.Spec.Suspend {
		setCondition(&pr, v1alpha1.ConditionReconciling, metav1.ConditionFalse, "Suspended", "spec.suspend is true: not syncing")
		return reconcile.Result{}, r.patchStatus(ctx, before, &pr)
	}

	idx, err := r.sync(ctx, &pr)
	if err != nil {
		reason, msg, logMsg, stalled := v1alpha1.ReasonIndexFailed, fmt.Sprintf("cannot read %s: %v", pr.Spec.URL, err), "sync failed; retrying at the next sync", false
		if errors.Is(err, chartrepo.ErrTimeout) {
			reason = ReasonTimeout
		}
		if refused := repoaccess.ReasonOf(err); refused != "" {
			// Retrying cannot help: the spec (or the operator's
			// configuration) must change, and either reconciles again.
			// Access refuses before reading the Secret or sending
			// anything (the keyring's namespace included).
			reason, msg, logMsg, stalled = refused, fmt.Sprintf("PackageRepository %s is refused: %v", pr.Name, err), "repository refused; not syncing until its spec changes", true
		}
		// One error line and one Event per new failure; the same failure
		// at every retry is noise, logged at debug level.
		if ready := meta.FindStatusCondition(pr.Status.Conditions, v1alpha1.ConditionReady); ready == nil || ready.Message != msg {
			logger.Error(err, logMsg, "url", pr.Spec.URL, "reason", reason)
			r.event(&pr, "Warning", reason, msg)
		} else {
			logger.V(1).Info("sync failed again", "url", pr.Spec.URL, "error", err.Error())
		}
		setCondition(&pr, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
		if stalled {
			setCondition(&pr, v1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
			setCondition(&pr, v1alpha1.ConditionReconciling, metav1.ConditionFalse, reason, "waiting for the spec to change")
			return reconcile.Result{}, r.patchStatus(ctx, before, &pr)
		}
		meta.RemoveStatusCondition(&pr.Status.Conditions, v1alpha1.ConditionStalled)
		retry := r.retryAfter(&pr, interval)
		setCondition(&pr, v1alpha1.ConditionReconciling, metav1.ConditionFalse, reason, "retrying in "+retry.String())
		return reconcile.Result{RequeueAfter: retry}, r.patchStatus(ctx, before, &pr)
	}
	r.succeeded(pr.Name)
	meta.RemoveStatusCondition(&pr.Status.Conditions, v1alpha1.ConditionStalled)

	now := metav1.NewTime(r.clock())
	pr.Status.LastSyncTime = &now
	changed := pr.Status.IndexDigest != idx.Digest
	pr.Status.IndexDigest = idx.Digest
	pr.Status.Packages, pr.Status.PackageCount = summarize(idx)
	msg := fmt.Sprintf("%d package(s) at %s", pr.Status.PackageCount, pr.Spec.URL)
	if problems := idx.Problems(); len(problems) > 0 {
		msg += fmt.Sprintf("; %d version(s) cannot be installed because digests are mandatory: %s", len(problems), firstProblems(problems, ", "))
	}
	if malformed := idx.Malformed(); len(malformed) > 0 {
		msg += fmt.Sprintf("; %d version(s) cannot be installed because their index entries are malformed: %s", len(malformed), firstProblems(malformed, "; "))
	}
	if changed {
		logger.Info("synced", "url", pr.Spec.URL, "packages", pr.Status.PackageCount, "indexDigest", idx.Digest, "message", msg)
		r.event(&pr, "Normal", v1alpha1.ReasonSucceeded, msg)
	}
	setCondition(&pr, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, msg)
	setCondition(&pr, v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonSucceeded, "synced")
	return reconcile.Result{RequeueAfter: interval}, r.patchStatus(ctx, before, &pr)
}

func (r *Reconciler) sync(ctx context.Context, pr *v1alpha1.PackageRepository) (*chartrepo.Index, error) {
	c, err := ClientFor(ctx, r.Client, pr, r.Access)
	if err != nil {
		return nil, err
	}
	var names []string
	if c.IsOCI() {
		names, err = r.requestedPackages(ctx, pr.Name)
		if err != nil {
			return nil, err
		}
	}
	return c.Index(ctx, names...)
}

// requestedPackages lists the packages GadgetPackages ask of repository.
func (r *Reconciler) requestedPackages(ctx context.Context, repository string) ([]string, error) {
	var list v1alpha1.GadgetPackageList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list GadgetPackages: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, gp := range list.Items {
		if gp.Spec.Repository == repository && !seen[gp.Spec.Package] {
			seen[gp.Spec.Package] = true
			out = append(out, gp.Spec.Package)
		}
	}
	return out, nil
}

// firstProblems joins the first maxMessageProblems of problems with sep
// and says how many more there are.
func firstProblems(problems []string, sep string) string {
	shown := problems
	if len(shown) > maxMessageProblems {
		shown = append(shown[:maxMessageProblems:maxMessageProblems], fmt.Sprintf("and %d more", len(problems)-maxMessageProblems))
	}
	return strings.Join(shown, sep)
}

func summarize(idx *chartrepo.Index) ([]v1alpha1.RepositoryPackage, int32) {
	names := idx.Names()
	var out []v1alpha1.RepositoryPackage
	for _, n := range names {
		if len(out) == MaxPackages {
			break
		}
		rp := v1alpha1.RepositoryPackage{Name: n}
		for _, v := range idx.Packages[n] {
			if len(rp.Versions) == MaxVersions {
				break
			}
			rp.Versions = append(rp.Versions, v.Version)
		}
		out = append(out, rp)
	}
	return out, int32(len(names))
}

func (r *Reconciler) patchStatus(ctx context.Context, before, after *v1alpha1.PackageRepository) error {
	err := r.Client.Status().Patch(ctx, after, client.MergeFrom(before))
	if apierrors.IsNotFound(err) || (err != nil && ctx.Err() != nil) {
		return nil // gone, or shutting down: the next leader writes it
	}
	if err != nil {
		return fmt.Errorf("patch status of PackageRepository %s: %w", after.Name, err)
	}
	return nil
}

func (r *Reconciler) event(obj runtime.Object, typ, reason, msg string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, typ, reason, "%s", msg)
	}
}

func setCondition(pr *v1alpha1.PackageRepository, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&pr.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: pr.Generation,
	})
}
