// Package identity says which Kubernetes identity a GadgetPackage acts
// as: its spec.serviceAccountName, else the operator's default service
// account, else the operator's own.
package identity

import (
	"errors"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// ErrServiceAccountNotFound: the ServiceAccount a package acts as does not
// exist in its namespace. Services that check it wrap it.
var ErrServiceAccountNotFound = errors.New("service account not found")

// ServiceAccount returns the service account, in the package's namespace,
// that the package acts as: spec.serviceAccountName, else defaultSA (the
// operator's --default-service-account). ok is false when both are empty:
// the package then acts with the operator's own identity.
func ServiceAccount(pkg *v1alpha1.GadgetPackage, defaultSA string) (namespace, name string, ok bool) {
	name = pkg.Spec.ServiceAccountName
	if name == "" {
		name = defaultSA
	}
	if name == "" {
		return "", "", false
	}
	return pkg.Namespace, name, true
}
