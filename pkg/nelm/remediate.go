package nelm

import (
	"context"
	"errors"
	"fmt"
	"time"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmrelease "helm.sh/helm/v3/pkg/release"
	helmreleaseutil "helm.sh/helm/v3/pkg/releaseutil"
	helmdriver "helm.sh/helm/v3/pkg/storage/driver"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// remediate undoes a failed install or upgrade as pkg asks
// (InstallRemediation, UpgradeRemediation): a failed install is
// uninstalled, so that the next attempt installs cleanly; a failed upgrade
// is rolled back to the last deployed revision, or uninstalled. It returns
// failure with what was done appended, so the package's status says it;
// when the remediation fails too, an error wrapping ErrRemediationFailed
// that says what to do. Without a remediation it returns failure as is.
// ctx is not cancelled by the caller: like the action that failed, the
// remediation runs to its end, bounded by timeout.
func (s *Service) remediate(ctx context.Context, pkg Package, op *operation, action Action, failure error, timeout time.Duration) error {
	var strategy v1alpha1.RemediationStrategy
	switch {
	case action == ActionInstall && pkg.InstallRemediation != nil:
		strategy = v1alpha1.RemediationUninstall
	case action == ActionUpgrade && pkg.UpgradeRemediation != nil:
		strategy = pkg.UpgradeRemediation.Strategy
		if strategy == "" {
			strategy = v1alpha1.RemediationRollback
		}
	default:
		return failure
	}
	failed, err := op.lastRelease()
	if err == nil && failed == nil {
		// Helm stored nothing (it failed before recording a revision):
		// there is nothing to undo.
		return failure
	}
	var done string
	if err == nil {
		switch strategy {
		case v1alpha1.RemediationUninstall:
			done, err = s.remediateUninstall(ctx, pkg, op, action, failed, timeout)
		case v1alpha1.RemediationRollback:
			done, err = s.remediateRollback(ctx, pkg, op, failed, timeout)
		default:
			err = fmt.Errorf("spec.upgrade.remediation.strategy is %q; want rollback or uninstall", strategy)
		}
	}
	if err != nil {
		err = forbidden("remediate", pkg, err)
		return fmt.Errorf("%w; %w: %s of release %s: %w; look at `helm history %s -n %s`, fix or remove the release by hand, then set the annotation %s on the GadgetPackage",
			failure, ErrRemediationFailed, strategy, pkg.Name, err, pkg.Name, pkg.Namespace, v1alpha1.RetryAnnotation)
	}
	return fmt.Errorf("%w; remediated: %s", failure, done)
}

// remediateUninstall uninstalls the failed release; the next attempt
// installs it again.
func (s *Service) remediateUninstall(ctx context.Context, pkg Package, op *operation, action Action, failed *helmrelease.Release, timeout time.Duration) (string, error) {
	if err := op.uninstall(ctx, failed, timeout); err != nil {
		return "", err
	}
	s.opts.Logger.Info("remediated a failed "+string(action)+": uninstalled the release",
		"package", pkg.Key(), "release", pkg.Name, "revision", failed.Version)
	s.event(pkg, false, ReasonRemediated, "Uninstalled release %s after its failed %s (revision %d); the next attempt installs it again",
		pkg.Name, action, failed.Version)
	return fmt.Sprintf("uninstalled release %s (failed revision %d), the next attempt installs it again", pkg.Name, failed.Version), nil
}

// remediateRollback rolls the release back to its newest revision that
// was deployed before the failed one, as a new revision.
func (s *Service) remediateRollback(ctx context.Context, pkg Package, op *operation, failed *helmrelease.Release, timeout time.Duration) (string, error) {
	h, err := op.cfg.Releases.History(pkg.Name)
	if err != nil && !errors.Is(err, helmdriver.ErrReleaseNotFound) {
		return "", fmt.Errorf("read release history: %w", err)
	}
	helmreleaseutil.Reverse(h, helmreleaseutil.SortByRevision)
	var target *helmrelease.Release
	for _, r := range h {
		// The revision an upgrade replaced is superseded even when the
		// upgrade then failed its readiness wait.
		if r.Version < failed.Version && r.Info != nil &&
			(r.Info.Status == helmrelease.StatusDeployed || r.Info.Status == helmrelease.StatusSuperseded) {
			target = r
			break
		}
	}
	if target == nil {
		return "", fmt.Errorf("no revision before %d was deployed, nothing to roll back to", failed.Version)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	rb := helmaction.NewRollback(op.cfg)
	rb.Version = target.Version
	rb.Wait, rb.Timeout = true, timeout
	rb.MaxHistory = s.opts.MaxHistory
	if err := rb.Run(pkg.Name); err != nil {
		return "", fmt.Errorf("roll back to revision %d: %w", target.Version, err)
	}
	now := failed.Version + 1
	if last, err := op.lastRelease(); err == nil && last != nil {
		now = last.Version
	}
	s.opts.Logger.Info("remediated a failed upgrade: rolled the release back",
		"package", pkg.Key(), "release", pkg.Name, "failedRevision", failed.Version, "to", target.Version, "revision", now)
	s.event(pkg, false, ReasonRemediated, "Rolled release %s back from failed revision %d to revision %d (now revision %d)",
		pkg.Name, failed.Version, target.Version, now)
	return fmt.Sprintf("rolled release %s back from failed revision %d to revision %d (now revision %d)", pkg.Name, failed.Version, target.Version, now), nil
}
