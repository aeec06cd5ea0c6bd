// Package v1alpha1 contains the gadgetpm.io/v1alpha1 API: PackageRepository
// (cluster-scoped) and GadgetPackage (namespaced).
//
// +kubebuilder:object:generate=true
// +groupName=gadgetpm.io
package v1alpha1
