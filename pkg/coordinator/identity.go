package coordinator

import (
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
	"github.com/gadgetpm/gadgetpm/pkg/objectpatch"
)

// packagePatcher gives each package's hooks an object patcher that acts as
// the package's ServiceAccount (spec.serviceAccountName, else defaultSA)
// and puts namespaced objects naming none in the package's namespace.
type packagePatcher struct {
	*objectpatch.Patcher
	defaultSA string
}

var _ hookhost.PackagePatcher = packagePatcher{}

func (p packagePatcher) ForPackage(gp *v1alpha1.GadgetPackage) (hooks.ObjectPatcher, error) {
	_, sa, _ := identity.ServiceAccount(gp, p.defaultSA)
	return p.Patcher.ForPackage(gp.Namespace, sa)
}
