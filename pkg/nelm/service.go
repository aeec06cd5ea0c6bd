package nelm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	helmrelease "helm.sh/helm/v3/pkg/release"
	helmreleaseutil "helm.sh/helm/v3/pkg/releaseutil"
	helmdriver "helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
)

// Labels gadgetpm puts on the releases it makes (Helm stores them on the
// release Secret).
const (
	// LabelManagedBy marks a release made by gadgetpm; its value is
	// ManagedByValue. A release without it belongs to someone else and is
	// never taken over unless the package opts in with AdoptAnnotation.
	LabelManagedBy = "gadgetpm.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "gadgetpm"
	// LabelChecksum holds the checksum of the chart, values and rendered
	// manifest a revision was made from (see Rendered.Checksum).
	LabelChecksum = "gadgetpm.io/checksum"
)

// AdoptAnnotation on a GadgetPackage, set to "true", lets gadgetpm take over
// a Helm release of the package's name that it did not make.
const AdoptAnnotation = v1alpha1.AdoptReleaseAnnotation

// Event reasons on the GadgetPackage.
const (
	ReasonInstalling   = "HelmInstalling"
	ReasonInstalled    = "HelmInstalled"
	ReasonUpgrading    = "HelmUpgrading"
	ReasonUpgraded     = "HelmUpgraded"
	ReasonUpToDate     = "HelmUpToDate"
	ReasonUnlocked     = "HelmUnlocked"
	ReasonFailed       = "HelmFailed"
	ReasonWaiting      = "HelmWaiting"
	ReasonNotReady     = "HelmNotReady"
	ReasonRefused      = "HelmReleaseNotOwned"
	ReasonUninstalling = "HelmUninstalling"
	ReasonUninstalled  = "HelmUninstalled"
	ReasonDrift        = "HelmDrift"
	// Remediation and drift of modified objects use the API's reasons,
	// which the GadgetPackage's conditions share.
	ReasonRemediated        = v1alpha1.ReasonRemediated
	ReasonRemediationFailed = v1alpha1.ReasonRemediationFailed
	ReasonDriftDetected     = v1alpha1.ReasonDriftDetected
	ReasonDriftCorrected    = v1alpha1.ReasonDriftCorrected
)

// Errors matched with errors.Is.
var (
	// ErrNotOwned: a release of the package's name exists and was not made
	// by gadgetpm.
	ErrNotOwned = errors.New("release not made by gadgetpm")
	// ErrNamespaceNotFound: the package's namespace does not exist.
	ErrNamespaceNotFound = errors.New("namespace not found")
	// ErrNotReady: the release was applied but an object did not become
	// ready within the timeout.
	ErrNotReady = errors.New("not ready")
	// ErrInvalidPackage: the Package value is unusable (empty namespace,
	// a name Helm rejects as a release name).
	ErrInvalidPackage = errors.New("invalid package")
	// ErrInvalidChart: the chart is missing or malformed.
	ErrInvalidChart = errors.New("invalid chart")
	// ErrRemediationFailed: an install or upgrade failed and so did its
	// remediation (uninstall or rollback); retrying cannot help until
	// someone looks at the release.
	ErrRemediationFailed = errors.New("remediation failed")
)

// Package is what the service needs to know about a GadgetPackage.
type Package struct {
	// Namespace of the GadgetPackage; the release and its storage live here.
	Namespace string
	// Name of the GadgetPackage; it is also the release name.
	Name string
	// Object is the GadgetPackage that Events are recorded on; nil records
	// none.
	Object *corev1.ObjectReference
	// AdoptRelease allows taking over a release of this name that gadgetpm
	// did not make.
	AdoptRelease bool
	// ServiceAccount, in Namespace, is who the release acts as: Helm's
	// install, upgrade and uninstall, its release storage, readiness waits,
	// the drift monitor's reads and the creation of the chart's CRDs go
	// through an impersonating client. Empty: the Service's own identity.
	ServiceAccount string
	// InstallRemediation, when set, uninstalls a release whose install
	// failed, so that the next attempt is a clean install
	// (spec.install.remediation).
	InstallRemediation *v1alpha1.InstallRemediation
	// UpgradeRemediation, when set, rolls back or uninstalls a release
	// whose upgrade failed (spec.upgrade.remediation).
	UpgradeRemediation *v1alpha1.UpgradeRemediation
	// DriftDetection says whether objects of the release whose fields
	// differ from its manifest are reported or corrected
	// (spec.driftDetection); nil: disabled.
	DriftDetection *v1alpha1.DriftDetection
}

// PackageFor describes gp, reading AdoptAnnotation and
// spec.serviceAccountName (a default account is the caller's to apply).
func PackageFor(gp *v1alpha1.GadgetPackage) Package {
	_, sa, _ := identity.ServiceAccount(gp, "")
	return Package{
		Namespace: gp.Namespace,
		Name:      gp.Name,
		Object: &corev1.ObjectReference{
			APIVersion:      v1alpha1.GroupVersion.String(),
			Kind:            "GadgetPackage",
			Namespace:       gp.Namespace,
			Name:            gp.Name,
			UID:             gp.UID,
			ResourceVersion: gp.ResourceVersion,
		},
		AdoptRelease:       gp.Annotations[AdoptAnnotation] == "true",
		ServiceAccount:     sa,
		InstallRemediation: installRemediation(&gp.Spec),
		UpgradeRemediation: upgradeRemediation(&gp.Spec),
		DriftDetection:     gp.Spec.DriftDetection,
	}
}

func installRemediation(s *v1alpha1.GadgetPackageSpec) *v1alpha1.InstallRemediation {
	if s.Install == nil {
		return nil
	}
	return s.Install.Remediation
}

func upgradeRemediation(s *v1alpha1.GadgetPackageSpec) *v1alpha1.UpgradeRemediation {
	if s.Upgrade == nil {
		return nil
	}
	return s.Upgrade.Remediation
}

// Key is "<namespace>.<name>", the package's key everywhere in gadgetpm.
func (p Package) Key() string { return p.Namespace + "." + p.Name }

// String names the package for messages.
func (p Package) String() string { return p.Namespace + "/" + p.Name }

// Options configure a Service. The zero value of every field means its
// default.
type Options struct {
	// QPS and Burst of the service's own client. Defaults 20 and 40.
	QPS   float32
	Burst int
	// Discovery maps kinds and discovers the API for every Helm
	// operation; Helm's RESTClientGetter hands it out. The operator passes
	// the process's shared one. Default: one of the service's own.
	Discovery Discovery
	// MaxHistory is how many revisions a release keeps. Default 5.
	MaxHistory int
	// Timeout bounds the wait for a release's objects to become ready and
	// to go away on delete. Default 5m.
	Timeout time.Duration
	// MonitorInterval is how often the drift monitor checks a release.
	// Default 4m.
	MonitorInterval time.Duration
	// MonitorJitter is the largest random fraction (at most 1) of
	// MonitorInterval added to each wait, so monitors of many releases
	// spread out. Default 0.1; negative means none.
	MonitorJitter float64
	// Recorder records progress and errors as Events on the GadgetPackage.
	// Default: no Events.
	Recorder record.EventRecorder
	// Logger receives Helm's debug output at V(1). Default: discarded.
	Logger logr.Logger
	// DriftBuffer is the capacity of the Drifts channel. Default 64.
	DriftBuffer int
}

// validate rejects settings that have no meaning.
func (o *Options) validate() error {
	switch {
	case o.QPS < 0:
		return fmt.Errorf("Options.QPS is %v; want a positive rate or 0 for the default", o.QPS)
	case o.Burst < 0:
		return fmt.Errorf("Options.Burst is %d; want a positive count or 0 for the default", o.Burst)
	case o.MaxHistory < 0:
		return fmt.Errorf("Options.MaxHistory is %d; want a positive count or 0 for the default", o.MaxHistory)
	case o.Timeout < 0:
		return fmt.Errorf("Options.Timeout is %v; want a positive duration or 0 for the default", o.Timeout)
	case o.MonitorInterval < 0:
		return fmt.Errorf("Options.MonitorInterval is %v; want a positive duration or 0 for the default", o.MonitorInterval)
	case o.MonitorJitter > 1:
		return fmt.Errorf("Options.MonitorJitter is %v; want at most 1 (a fraction of the interval)", o.MonitorJitter)
	case o.DriftBuffer < 0:
		return fmt.Errorf("Options.DriftBuffer is %d; want a positive capacity or 0 for the default", o.DriftBuffer)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.QPS == 0 {
		o.QPS = 20
	}
	if o.Burst == 0 {
		o.Burst = 40
	}
	if o.MaxHistory == 0 {
		o.MaxHistory = 5
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.MonitorInterval == 0 {
		o.MonitorInterval = 4 * time.Minute
	}
	if o.MonitorJitter == 0 {
		o.MonitorJitter = 0.1
	}
	if o.MonitorJitter < 0 {
		o.MonitorJitter = 0
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.DriftBuffer == 0 {
		o.DriftBuffer = 64
	}
}

// Service manages the Helm releases of gadget packages and watches them for
// drift. It is safe for concurrent use; operations on one package are
// serialized, operations on different packages run in parallel.
type Service struct {
	opts Options
	// own are the clients of the Service's own identity.
	own *clients
	// identities are the clients of the ServiceAccounts packages act as.
	identities identities
	drifts     chan Drift

	locks keyedLock

	mu sync.Mutex
	// monitors holds the running monitor of each package key; guarded by mu.
	monitors map[string]*monitor
	// paused counts Pause calls not yet matched by Resume, per package key;
	// guarded by mu.
	paused map[string]int
	// pauseEpoch counts every Pause per package key, so a check can tell
	// that an operation ran while it looked; guarded by mu.
	pauseEpoch map[string]uint64
	// stopped is set by StopMonitors; no monitor starts after it. Guarded by mu.
	stopped bool
	wg      sync.WaitGroup
}

// New returns a Service that reaches the cluster through cfg with its own
// QPS and burst. It starts nothing.
func New(cfg *rest.Config, opts Options) (*Service, error) {
	if cfg == nil {
		return nil, errors.New("create release service: nil rest.Config")
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("create release service: %w", err)
	}
	opts.setDefaults()
	access, err := newClusterAccess(cfg, opts.QPS, opts.Burst, opts.Discovery)
	if err != nil {
		return nil, fmt.Errorf("create release service: %w", err)
	}
	own, err := newClients(access)
	if err != nil {
		return nil, fmt.Errorf("create release service: %w", err)
	}
	return &Service{
		opts:       opts,
		own:        own,
		identities: identities{byUser: map[string]*identityClients{}, userOf: map[string]string{}},
		drifts:     make(chan Drift, opts.DriftBuffer),
		locks:      keyedLock{held: map[string]chan struct{}{}},
		monitors:   map[string]*monitor{},
		paused:     map[string]int{},
		pauseEpoch: map[string]uint64{},
	}, nil
}

// cancelledBy reports whether err is ctx's cancellation: the caller (a
// newer plan, a removal, a stop) gave up on the operation, which says
// nothing about the release and is not reported as its failure.
func cancelledBy(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled)
}

// event records an Event on the package's object, if it has one.
func (s *Service) event(pkg Package, warning bool, reason, format string, args ...any) {
	if pkg.Object == nil || s.opts.Recorder == nil {
		return
	}
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	s.opts.Recorder.Eventf(pkg.Object, typ, reason, format, args...)
}

// keyedLock serializes work per key.
type keyedLock struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when the holder unlocks; guarded by mu
}

// lock waits for key to be free or ctx to end; the returned func unlocks.
func (l *keyedLock) lock(ctx context.Context, key string) (func(), error) {
	for {
		l.mu.Lock()
		ch, busy := l.held[key]
		if !busy {
			mine := make(chan struct{})
			l.held[key] = mine
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, key)
				l.mu.Unlock()
				close(mine)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for another operation on %s: %w", key, ctx.Err())
		}
	}
}

// unlockPending marks every revision of pkg's release still pending-install,
// pending-upgrade or pending-rollback as failed, newest first. The caller
// holds pkg's lock and only the leader writes releases, so such a revision
// was left by a process that died mid-operation and has no live writer.
// Each one gets its own HelmUnlocked Event and log line naming the state it
// was found in, read before the unlock overwrites it. last is the newest
// revision, updated in place so the caller sees its new status.
func (s *Service) unlockPending(pkg Package, op *operation, last *helmrelease.Release) (bool, error) {
	if last == nil {
		return false, nil
	}
	revs := []*helmrelease.Release{last}
	// Older revisions can be pending too (a process died after another
	// made a newer revision over them); one more List per upgrade is cheap
	// next to Helm's own reads.
	h, err := op.cfg.Releases.History(pkg.Name)
	if err != nil && !errors.Is(err, helmdriver.ErrReleaseNotFound) {
		return false, fmt.Errorf("read release history of %s: %w", pkg, err)
	}
	helmreleaseutil.Reverse(h, helmreleaseutil.SortByRevision)
	for _, r := range h {
		if r.Version != last.Version {
			revs = append(revs, r)
		}
	}
	unlocked := false
	for _, r := range revs {
		if r.Info == nil || !r.Info.Status.IsPending() {
			continue
		}
		found := r.Info.Status
		if err := op.unlock(r); err != nil {
			return unlocked, err
		}
		unlocked = true
		next := "the next operation proceeds"
		if r == last {
			next = "upgrading again"
		}
		s.opts.Logger.Info("unlocked a release left pending by an interrupted operation",
			"package", pkg.Key(), "release", pkg.Name, "revision", r.Version, "found", string(found))
		s.event(pkg, true, ReasonUnlocked, "Release %s revision %d was found %s, left by an interrupted operation; marked it failed, %s",
			pkg.Name, r.Version, found, next)
	}
	return unlocked, nil
}
