package cmdline

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gadgetpm/gadgetpm/packages/download"
)

// Size is a flag of a number of bytes written as a Kubernetes quantity
// ("64Mi", "1Gi", "500k", "1048576").
type Size int64

// String is the size as a quantity, "64Mi".
func (s *Size) String() string { return resource.NewQuantity(int64(*s), resource.BinarySI).String() }

// Set parses a quantity of at least one byte.
func (s *Size) Set(v string) error {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return fmt.Errorf("want a size such as 64Mi, 1Gi or 1048576: %w", err)
	}
	n, ok := q.AsInt64()
	if !ok || n < 1 {
		return fmt.Errorf("%q: want a whole number of bytes, at least 1", v)
	}
	*s = Size(n)
	return nil
}

// Type is the flag's type in --help.
func (s *Size) Type() string { return "size" }

// Downloads are the size limits of what a repository may send, which
// both roles apply (--max-package-size, --max-index-size).
type Downloads struct {
	MaxPackageSize, MaxIndexSize Size
}

// DownloadFlags registers --max-package-size and --max-index-size on cmd.
func DownloadFlags(cmd *cobra.Command, d *Downloads) {
	d.MaxPackageSize, d.MaxIndexSize = download.DefaultMaxPackageBytes, download.DefaultMaxIndexBytes
	cmd.Flags().Var(&d.MaxPackageSize, "max-package-size",
		"the largest package archive a repository may send (an HTTP download, or an OCI chart layer by the size its manifest gives, checked before the pull); "+
			"a larger one fails the GadgetPackage (Ready=False, reason DownloadFailed) without being read past the limit. Give both roles the same value")
	cmd.Flags().Var(&d.MaxIndexSize, "max-index-size",
		"the largest index.yaml or OCI manifest a repository may send; a larger one fails the PackageRepository's sync (Ready=False) "+
			"and its GadgetPackages' downloads without being read past the limit")
}

// HookResultSizeFlag registers --max-hook-result-size on cmd.
func HookResultSizeFlag(cmd *cobra.Command, s *Size, def int64) {
	*s = Size(def)
	cmd.Flags().Var(s, "max-hook-result-size",
		"the largest result file one hook run may leave (values and config values patches, Kubernetes patch, metrics); "+
			"a larger one is not read and fails the run, naming the hook, the file and the limit")
}
