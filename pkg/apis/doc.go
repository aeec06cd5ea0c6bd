// Package apis holds the Go types of gadgetpm's custom resources.
//
// Two API groups live below it:
//
//   - gadgetpm.io/v1alpha1 (package gadgetpm/v1alpha1): PackageRepository and
//     GadgetPackage, the package manager's own resources.
//   - gadget.kinvolk.io/v1alpha1 (package gadget/v1alpha1): Trace, compatible
//     with the documented Inspektor Gadget Trace resource and extended with
//     schedules and run history.
//
// The kubebuilder markers on the types are the single source of the CRD
// schemas: `make generate` writes the deepcopy code beside the types and the
// CRD YAML into charts/gadgetpm/crds/. This package holds types, constants and
// the scheme registration only; it must not import controllers or clients.
package apis
