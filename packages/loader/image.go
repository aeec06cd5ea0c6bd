package loader

import (
	"github.com/Masterminds/semver/v3"
	helmchart "helm.sh/helm/v3/pkg/chart"

	"github.com/gadgetpm/gadgetpm/packages/igimage"
)

// image loads the package directory of an Inspektor Gadget image
// (packages/igimage): its gadget as any package's, and an empty chart
// named after it, so settings and the release are handled as for every
// package while the release holds no resources.
func (c *checker) image(info igimage.Info, err error) {
	if err != nil {
		c.add(igimage.InfoFile, 0, "%v", err)
		return
	}
	c.pkg.Image = &info
	c.pkg.Name, c.pkg.Version = info.Name, info.Version
	if c.pkg.Version == "" {
		c.pkg.Version = igimage.PackageVersion(info.Digest)
	}
	// A chart's version is semver; a tag such as "latest" is not.
	chartVersion := "0.0.0"
	if v, err := semver.NewVersion(info.Version); err == nil {
		chartVersion = v.String()
	}
	c.pkg.Chart = &helmchart.Chart{Metadata: &helmchart.Metadata{APIVersion: helmchart.APIVersionV2, Name: info.Name, Version: chartVersion,
		Description: "Inspektor Gadget image " + info.Image, Type: "application"}}
	c.pkg.Chart.Values = map[string]any{}
	c.gadget()
}
