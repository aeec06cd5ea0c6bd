package apis

import (
	"k8s.io/apimachinery/pkg/runtime"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// AddToScheme adds every gadgetpm API group to s.
func AddToScheme(s *runtime.Scheme) error {
	if err := gadgetpmv1alpha1.AddToScheme(s); err != nil {
		return err
	}
	return gadgetv1alpha1.AddToScheme(s)
}
