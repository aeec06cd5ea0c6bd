// Package fetch gets the package a GadgetPackage asks for onto disk and
// loads it, in the three steps the package's main queue runs as tasks:
//
//	Download  resolve the version by constraint, reuse the store's copy
//	          of its digest or download it (digest mandatory), check that
//	          it holds the chart it is listed as, verify provenance as the
//	          repository's spec.verify asks, store it
//	          (an Inspektor Gadget image of an oci:// repository: its
//	          manifest for this architecture, its layers checked and
//	          stored as a package directory, packages/igimage)
//	Install   extract the stored archive safely (by digest)
//	Load      load and check the package, validate the settings
//
// Each failure is an *Error carrying the condition reason the
// GadgetPackage controller reports. The package does not write status,
// queue tasks or talk to Helm.
package fetch
