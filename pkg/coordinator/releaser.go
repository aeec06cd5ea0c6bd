package coordinator

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"

	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/queue"
)

// releaser applies packages' charts through the Helm release service.
type releaser struct{ helm *nelm.Service }

func nelmPackage(rel manager.Release) nelm.Package {
	return nelm.Package{Namespace: rel.Namespace, Name: rel.Name, AdoptRelease: rel.AdoptRelease, ServiceAccount: rel.ServiceAccount,
		InstallRemediation: rel.InstallRemediation, UpgradeRemediation: rel.UpgradeRemediation, DriftDetection: rel.DriftDetection,
		Object: &corev1.ObjectReference{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "GadgetPackage", Namespace: rel.Namespace, Name: rel.Name,
		}}
}

// Upgrade applies the release. A release of the name that gadgetpm did not
// make fails terminally: retrying cannot help until the user renames the
// package, removes that release or sets the adopt-release annotation
// (which re-arms the package).
func (r releaser) Upgrade(ctx context.Context, rel manager.Release) (int, error) {
	res, err := r.helm.Upgrade(ctx, nelmPackage(rel), rel.Chart, rel.Values)
	if errors.Is(err, nelm.ErrNotOwned) {
		return 0, queue.Terminal(err)
	}
	// A failed remediation needs a person to look at the release; the
	// package is Stalled with reason RemediationFailed.
	if errors.Is(err, nelm.ErrRemediationFailed) {
		return 0, queue.Terminal(&fetch.Error{Reason: v1alpha1.ReasonRemediationFailed, Err: err})
	}
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// InstallCRDs creates the chart's crds/ before its hooks start; a chart
// whose crds/ cannot be read or are refused fails terminally.
func (r releaser) InstallCRDs(ctx context.Context, rel manager.Release) error {
	err := r.helm.InstallCRDs(ctx, nelmPackage(rel), rel.Chart)
	if errors.Is(err, nelm.ErrInvalidChart) {
		return queue.Terminal(err)
	}
	return err
}

var _ manager.CRDInstaller = releaser{}

func (r releaser) Delete(ctx context.Context, rel manager.Release) error {
	return r.helm.Delete(ctx, nelmPackage(rel))
}
