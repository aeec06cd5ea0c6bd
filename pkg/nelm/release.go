package nelm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	helmchartutil "helm.sh/helm/v3/pkg/chartutil"
	helmkube "helm.sh/helm/v3/pkg/kube"
	helmrelease "helm.sh/helm/v3/pkg/release"
	helmreleaseutil "helm.sh/helm/v3/pkg/releaseutil"
	helmdriver "helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/resource"

	"github.com/gadgetpm/gadgetpm/pkg/identity"
)

// Action is what Upgrade did.
type Action string

const (
	// ActionInstall: the release did not exist and was installed.
	ActionInstall Action = "install"
	// ActionUpgrade: a new revision was made.
	ActionUpgrade Action = "upgrade"
	// ActionSkip: the release was up to date; no new revision.
	ActionSkip Action = "skip"
)

// Result reports an Upgrade.
type Result struct {
	// Action taken.
	Action Action
	// Revision of the release now deployed.
	Revision int
	// Checksum of what was rendered (the release's LabelChecksum).
	Checksum string
	// Unlocked is set when a release left pending by an interrupted
	// operation was unlocked first.
	Unlocked bool
	// Drifted lists the objects whose fields differed from the manifest
	// of a skipped upgrade (spec.driftDetection warn or enabled; in
	// enabled they were corrected).
	Drifted []ObjectDrift
}

// Object names one Kubernetes object of a release.
type Object struct {
	Kind      string
	Namespace string
	Name      string
}

func (o Object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// Upgrade makes pkg's release match ch rendered with values: it installs the
// release when absent and upgrades it otherwise, then waits until its
// objects are ready (Options.Timeout).
//
// Nothing changes, and no revision is made, when the last revision is
// deployed, was made from the same checksum and values, and none of its
// objects is missing. A release left pending by an interrupted operation is
// marked failed and the operation proceeds. A release of the name not made
// by gadgetpm is refused with ErrNotOwned unless pkg.AdoptRelease.
//
// The drift monitor of pkg is paused during the operation and started, if
// not running, when it succeeds.
//
// ctx cancels the operation until Helm starts to apply the release; from
// then on the operation finishes (within Options.Timeout, or ctx's deadline
// if sooner) so a release is never left pending behind a returned call.
func (s *Service) Upgrade(ctx context.Context, pkg Package, ch *helmchart.Chart, values map[string]any) (*Result, error) {
	res, err := s.upgrade(ctx, pkg, ch, values)
	if cancelledBy(ctx, err) {
		s.opts.Logger.V(1).Info("upgrade cancelled by the caller", "package", pkg.Key(), "error", err.Error())
		return nil, err
	}
	if err != nil {
		s.failed(pkg, "upgrade", err)
		return nil, err
	}
	return res, nil
}

func (s *Service) upgrade(ctx context.Context, pkg Package, ch *helmchart.Chart, values map[string]any) (*Result, error) {
	if err := validatePackage(pkg); err != nil {
		return nil, err
	}
	if err := validatePolicy(pkg); err != nil {
		return nil, err
	}
	ch, err := prepareChart(ch)
	if err != nil {
		return nil, fmt.Errorf("upgrade release %s: %w", pkg, err)
	}
	values = copyValues(values)
	if values == nil {
		values = map[string]any{}
	}
	unlock, err := s.locks.lock(ctx, pkg.Key())
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.Pause(pkg)
	defer s.Resume(pkg)

	if err := s.checkNamespace(ctx, pkg); err != nil {
		return nil, err
	}
	if err := s.checkServiceAccount(ctx, "upgrade", pkg); err != nil {
		return nil, err
	}
	caps, err := s.liveCapabilities(ctx)
	if err != nil {
		return nil, fmt.Errorf("upgrade release %s: %w", pkg, err)
	}
	rendered, err := render(ch, values, liveRenderOptions(pkg, caps))
	if err != nil {
		return nil, fmt.Errorf("upgrade release %s: %w", pkg, err)
	}

	op, err := s.newOperation(pkg)
	if err != nil {
		return nil, fmt.Errorf("upgrade release %s: %w", pkg, err)
	}
	// Helm uses these capabilities instead of discovering them again, so
	// the release is made for exactly what was rendered above.
	op.cfg.Capabilities = caps
	last, err := op.lastRelease()
	if err != nil {
		return nil, forbidden("upgrade", pkg, fmt.Errorf("upgrade release %s: %w", pkg, err))
	}
	if err := checkOwner(pkg, last); err != nil {
		return nil, err
	}
	res := &Result{Checksum: rendered.Checksum}
	if res.Unlocked, err = s.unlockPending(pkg, op, last); err != nil {
		return nil, forbidden("upgrade", pkg, err)
	}
	if last != nil && !res.Unlocked && last.Info.Status == helmrelease.StatusDeployed &&
		last.Labels[LabelChecksum] == rendered.Checksum && sameValues(last.Config, values) {
		missing, err := op.missingObjects(ctx, rendered.Manifest)
		if err != nil {
			return nil, forbidden("upgrade", pkg, fmt.Errorf("upgrade release %s: %w", pkg, err))
		}
		if len(missing) == 0 {
			// Modified objects do not call for a new revision: they are
			// reported, or set back with server-side apply, as Flux does.
			if res.Drifted, err = s.checkModified(ctx, pkg, op, last.Version, last.Manifest); err != nil {
				return nil, forbidden("detect drift of", pkg, err)
			}
			res.Action, res.Revision = ActionSkip, last.Version
			s.event(pkg, false, ReasonUpToDate, "Release %s revision %d is up to date", pkg.Name, last.Version)
			s.startMonitor(pkg, lastDeployed{revision: last.Version, manifest: last.Manifest})
			return res, nil
		}
	}

	labels := map[string]string{LabelManagedBy: ManagedByValue, LabelChecksum: rendered.Checksum}
	timeout := s.timeout(ctx)
	// Once Helm starts it runs to the end, bounded by timeout: Helm returns
	// early on cancellation but keeps applying in the background, and the
	// next operation would find the release pending and unlock it under a
	// live writer.
	helmCtx := context.WithoutCancel(ctx)
	var rel *helmrelease.Release
	if last == nil || last.Info.Status == helmrelease.StatusUninstalled {
		res.Action = ActionInstall
		s.event(pkg, false, ReasonInstalling, "Installing release %s from chart %s-%s", pkg.Name, ch.Name(), ch.Metadata.Version)
		inst := helmaction.NewInstall(op.cfg)
		inst.Namespace, inst.ReleaseName = pkg.Namespace, pkg.Name
		inst.Wait, inst.Timeout = true, timeout
		inst.Labels = labels
		// Replace reuses the name of a release uninstalled with its history kept.
		inst.Replace = last != nil
		rel, err = inst.RunWithContext(helmCtx, ch, values)
	} else {
		res.Action = ActionUpgrade
		s.event(pkg, false, ReasonUpgrading, "Upgrading release %s from revision %d to chart %s-%s", pkg.Name, last.Version, ch.Name(), ch.Metadata.Version)
		up := helmaction.NewUpgrade(op.cfg)
		up.Namespace = pkg.Namespace
		up.Wait, up.Timeout = true, timeout
		up.MaxHistory = s.opts.MaxHistory
		up.Labels = labels
		rel, err = up.RunWithContext(helmCtx, pkg.Name, ch, values)
	}
	if err != nil {
		failure := forbidden(string(res.Action), pkg, op.explain(ctx, string(res.Action), rendered.Manifest, err))
		return nil, s.remediate(helmCtx, pkg, op, res.Action, failure, timeout)
	}
	res.Revision = rel.Version
	if res.Action == ActionInstall {
		s.event(pkg, false, ReasonInstalled, "Installed release %s revision %d", pkg.Name, rel.Version)
	} else {
		s.event(pkg, false, ReasonUpgraded, "Upgraded release %s to revision %d", pkg.Name, rel.Version)
	}
	s.startMonitor(pkg, lastDeployed{revision: rel.Version, manifest: rel.Manifest})
	return res, nil
}

// Delete uninstalls pkg's release and waits until its objects are gone
// (Options.Timeout). A missing release is not an error; a release not made
// by gadgetpm is refused with ErrNotOwned unless pkg.AdoptRelease. The
// package's drift monitor is stopped first.
func (s *Service) Delete(ctx context.Context, pkg Package) error {
	err := s.delete(ctx, pkg)
	if cancelledBy(ctx, err) {
		s.opts.Logger.V(1).Info("uninstall cancelled by the caller", "package", pkg.Key(), "error", err.Error())
		return err
	}
	if err != nil {
		s.failed(pkg, "uninstall", err)
		return err
	}
	return nil
}

func (s *Service) delete(ctx context.Context, pkg Package) error {
	if err := validatePackage(pkg); err != nil {
		return err
	}
	unlock, err := s.locks.lock(ctx, pkg.Key())
	if err != nil {
		return err
	}
	defer unlock()
	s.stopMonitor(pkg)

	op, err := s.newOperation(pkg)
	if err != nil {
		return fmt.Errorf("delete release %s: %w", pkg, err)
	}
	last, err := op.lastRelease()
	if err != nil {
		return forbidden("uninstall", pkg, fmt.Errorf("delete release %s: %w", pkg, err))
	}
	if last == nil {
		s.forgetIdentity(pkg)
		return nil
	}
	if err := checkOwner(pkg, last); err != nil {
		return err
	}
	if last.Info.Status != helmrelease.StatusUninstalled {
		s.event(pkg, false, ReasonUninstalling, "Uninstalling release %s revision %d", pkg.Name, last.Version)
	}
	if err := op.uninstall(ctx, last, s.timeout(ctx)); err != nil {
		return forbidden("uninstall", pkg, err)
	}
	s.forgetIdentity(pkg)
	s.event(pkg, false, ReasonUninstalled, "Uninstalled release %s", pkg.Name)
	return nil
}

// Release returns the last revision of pkg's release, nil when there is none.
func (s *Service) Release(ctx context.Context, pkg Package) (*helmrelease.Release, error) {
	if err := validatePackage(pkg); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	op, err := s.newOperation(pkg)
	if err != nil {
		return nil, err
	}
	return op.lastRelease()
}

func (s *Service) timeout(ctx context.Context) time.Duration {
	t := s.opts.Timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = max(left, time.Second)
		}
	}
	return t
}

func (s *Service) checkNamespace(ctx context.Context, pkg Package) error {
	_, err := s.own.clientset.CoreV1().Namespaces().Get(ctx, pkg.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("upgrade release %s: %w: %q does not exist; create it or move the GadgetPackage", pkg, ErrNamespaceNotFound, pkg.Namespace)
	case err != nil:
		return fmt.Errorf("upgrade release %s: read namespace: %w", pkg, err)
	}
	return nil
}

func validatePackage(pkg Package) error {
	if pkg.Namespace == "" {
		return fmt.Errorf("%w %q: empty namespace", ErrInvalidPackage, pkg.Name)
	}
	if err := helmchartutil.ValidateReleaseName(pkg.Name); err != nil {
		return fmt.Errorf("%w %s: metadata.name %q cannot be a Helm release name: use lowercase letters, digits, '-' and '.', at most 53 characters (%v)",
			ErrInvalidPackage, pkg, pkg.Name, err)
	}
	return nil
}

func checkOwner(pkg Package, last *helmrelease.Release) error {
	if last == nil || last.Labels[LabelManagedBy] == ManagedByValue || pkg.AdoptRelease {
		return nil
	}
	return fmt.Errorf("release %s: %w: a Helm release of this name already exists without label %s=%s; rename the GadgetPackage, remove that release, or annotate the GadgetPackage %s=true to take it over",
		pkg, ErrNotOwned, LabelManagedBy, ManagedByValue, AdoptAnnotation)
}

// sameValues compares values as stored in a release with values given.
func sameValues(stored, given map[string]any) bool {
	a, errA := canonicalJSON(stored)
	b, errB := canonicalJSON(given)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// operation is one Helm action's configuration: Secret storage in the
// package's namespace and a log that remembers why an object is not ready,
// all acting as the package's identity.
type operation struct {
	pkg     Package
	cfg     *helmaction.Configuration
	kc      *helmkube.Client
	clients *clients
}

func (s *Service) newOperation(pkg Package) (*operation, error) {
	cl, err := s.clientsFor(pkg)
	if err != nil {
		return nil, err
	}
	op := &operation{pkg: pkg, cfg: &helmaction.Configuration{}, clients: cl}
	log := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.opts.Logger.V(1).Info(msg, "package", pkg.Key())
		if strings.HasPrefix(format, "beginning wait for %d resources with timeout") && len(args) == 2 {
			s.event(pkg, false, ReasonWaiting, "Waiting up to %v for %v objects of release %s to be ready", args[1], args[0], pkg.Name)
		}
	}
	// Init cannot fail for the Secret driver.
	_ = op.cfg.Init(&RESTClientGetter{access: cl.access, namespace: pkg.Namespace}, pkg.Namespace, "secret", log)
	if kc, ok := op.cfg.KubeClient.(*helmkube.Client); ok {
		kc.Namespace = pkg.Namespace
		op.kc = kc
	}
	return op, nil
}

// failed records a failed operation (step: upgrade, uninstall) as an
// Event and in the log: a refusal of the package's identity at error,
// since only a person granting the right (or fixing the chart) ends it;
// anything else at info, because the caller retries and its owner logs
// the final failure.
func (s *Service) failed(pkg Package, step string, err error) {
	reason := failureReason(err)
	s.event(pkg, true, reason, "%v", err)
	if identity.Reason(err) != "" {
		s.opts.Logger.Error(err, step+" refused", "package", pkg.Key(), "serviceAccount", pkg.ServiceAccount, "reason", reason)
		return
	}
	if errors.Is(err, ErrRemediationFailed) {
		s.opts.Logger.Error(err, step+" failed and so did its remediation", "package", pkg.Key(), "reason", reason)
		return
	}
	s.opts.Logger.Info(step+" failed", "package", pkg.Key(), "reason", reason, "error", err.Error())
}

// isReadinessComplaint recognises the ready checker's messages about an
// object that is not ready (by their format strings).
func isReadinessComplaint(format string) bool {
	for _, s := range []string{"is not ready", "is failed", "is not completed", "does not have", "is not bound"} {
		if strings.Contains(format, s) {
			return true
		}
	}
	return false
}

// explain wraps a failed Helm action's error. When the wait for readiness
// timed out it names the objects that were not ready and why.
func (op *operation) explain(ctx context.Context, step, manifest string, err error) error {
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("%s release %s: %w: the cluster does not serve this kind; install the CRD that defines it first or remove the object from the chart", step, op.pkg, err)
	}
	msg := err.Error()
	timedOut := errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "context deadline exceeded") || strings.Contains(msg, "timed out")
	if !timedOut || manifest == "" {
		return fmt.Errorf("%s release %s: %w", step, op.pkg, err)
	}
	// The caller's ctx may be the one that expired; look with a short one.
	lookCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	nr, lookErr := op.notReadyObjects(lookCtx, manifest)
	if lookErr != nil || len(nr) == 0 {
		return fmt.Errorf("%s release %s: %w", step, op.pkg, err)
	}
	names := make([]string, len(nr))
	for i, n := range nr {
		names[i] = n.String()
	}
	return fmt.Errorf("%s release %s: %w: %s (%v)", step, op.pkg, ErrNotReady, strings.Join(names, "; "), err)
}

// lastRelease returns the newest revision, or nil when there is none.
func (op *operation) lastRelease() (*helmrelease.Release, error) {
	h, err := op.cfg.Releases.History(op.pkg.Name)
	if errors.Is(err, helmdriver.ErrReleaseNotFound) || (err == nil && len(h) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read release history: %w", err)
	}
	helmreleaseutil.Reverse(h, helmreleaseutil.SortByRevision)
	return h[0], nil
}

// unlock marks a revision left pending as failed, so Helm proceeds.
func (op *operation) unlock(rel *helmrelease.Release) error {
	was := rel.Info.Status
	rel.SetStatus(helmrelease.StatusFailed, fmt.Sprintf("%s interrupted; unlocked by gadgetpm", was))
	if err := op.cfg.Releases.Update(rel); err != nil {
		return fmt.Errorf("unlock release %s revision %d left %s: %w", op.pkg, rel.Version, was, err)
	}
	return nil
}

// manifestObjects builds the objects of manifest with the release's
// client; none for an empty manifest.
func (op *operation) manifestObjects(manifest string) ([]*resource.Info, error) {
	if strings.TrimSpace(manifest) == "" {
		return nil, nil
	}
	if op.kc == nil {
		return nil, errors.New("no Kubernetes client for the release")
	}
	infos, err := op.kc.Build(strings.NewReader(manifest), false)
	if err != nil {
		return nil, fmt.Errorf("build objects from manifest: %w", err)
	}
	return infos, nil
}

// missingObjects lists the objects of manifest that do not exist.
func (op *operation) missingObjects(ctx context.Context, manifest string) ([]Object, error) {
	infos, err := op.manifestObjects(manifest)
	if err != nil {
		return nil, err
	}
	var missing []Object
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		_, err := resource.NewHelper(info.Client, info.Mapping).Get(info.Namespace, info.Name)
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, Object{Kind: info.Mapping.GroupVersionKind.Kind, Namespace: info.Namespace, Name: info.Name})
		case err != nil:
			return nil, fmt.Errorf("read %s %s/%s: %w", info.Mapping.GroupVersionKind.Kind, info.Namespace, info.Name, err)
		}
	}
	return missing, nil
}

// uninstall uninstalls the release whose newest revision is last, waits
// until its objects are gone and removes its history.
func (op *operation) uninstall(ctx context.Context, last *helmrelease.Release, timeout time.Duration) error {
	if last.Info.Status != helmrelease.StatusUninstalled {
		// History is kept until the objects are gone: a Delete that timed
		// out finds the release again on retry and waits for the same
		// objects instead of forgetting them.
		un := helmaction.NewUninstall(op.cfg)
		un.KeepHistory = true
		un.Timeout = timeout
		if _, err := un.Run(op.pkg.Name); err != nil {
			return fmt.Errorf("uninstall release %s: %w", op.pkg, err)
		}
	}
	if err := op.waitGone(ctx, last.Manifest, timeout); err != nil {
		return fmt.Errorf("uninstall release %s: %w", op.pkg, err)
	}
	if err := op.purge(); err != nil {
		return fmt.Errorf("uninstall release %s: %w", op.pkg, err)
	}
	return nil
}

// waitGone waits until no object of manifest exists, except those Helm
// keeps by their helm.sh/resource-policy annotation. On timeout it names
// what is left and its finalizers.
func (op *operation) waitGone(ctx context.Context, manifest string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		left, err := op.presentObjects(ctx, manifest)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("wait for objects to go: %w", err)
		}
		if err == nil && len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for objects to go: still present after %v: %s; check their finalizers and the controllers that own them",
				timeout, strings.Join(left, "; "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// presentObjects lists the objects of manifest that still exist and are
// not kept by policy, each with its finalizers.
func (op *operation) presentObjects(ctx context.Context, manifest string) ([]string, error) {
	infos, err := op.manifestObjects(manifest)
	if err != nil {
		return nil, err
	}
	var left []string
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return left, err
		}
		live, err := resource.NewHelper(info.Client, info.Mapping).Get(info.Namespace, info.Name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return left, fmt.Errorf("read %s %s/%s: %w", info.Mapping.GroupVersionKind.Kind, info.Namespace, info.Name, err)
		}
		m, err := meta.Accessor(live)
		if err != nil {
			return left, err
		}
		if m.GetAnnotations()[helmkube.ResourcePolicyAnno] == helmkube.KeepPolicy {
			continue
		}
		obj := Object{Kind: info.Mapping.GroupVersionKind.Kind, Namespace: info.Namespace, Name: info.Name}
		desc := obj.String()
		if f := m.GetFinalizers(); len(f) > 0 {
			desc += fmt.Sprintf(" (finalizers %s)", strings.Join(f, ", "))
		}
		left = append(left, desc)
	}
	return left, nil
}

// purge removes every stored revision of the release.
func (op *operation) purge() error {
	h, err := op.cfg.Releases.History(op.pkg.Name)
	if errors.Is(err, helmdriver.ErrReleaseNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read release history: %w", err)
	}
	for _, r := range h {
		if _, err := op.cfg.Releases.Delete(r.Name, r.Version); err != nil && !errors.Is(err, helmdriver.ErrReleaseNotFound) {
			return fmt.Errorf("delete revision %d: %w", r.Version, err)
		}
	}
	return nil
}
