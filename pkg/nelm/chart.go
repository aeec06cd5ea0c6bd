package nelm

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	helmchart "helm.sh/helm/v3/pkg/chart"
)

// GadgetDir is the chart folder holding the gadget's eBPF object and
// metadata. Its files are stripped before install: the release Secret must
// stay under the API server's 1 MiB limit and the object is fetched by
// digest instead.
const GadgetDir = "gadget/"

// prepareChart validates ch and returns a copy without gadget/ files that
// Helm may change. Helm's actions modify the chart they are given
// (metadata sanitising, dependency processing), and callers share loaded
// charts between operations, so Helm only ever sees a copy.
func prepareChart(ch *helmchart.Chart) (*helmchart.Chart, error) {
	if ch == nil || ch.Metadata == nil {
		return nil, fmt.Errorf("%w: no chart or no Chart.yaml metadata", ErrInvalidChart)
	}
	c := cloneChart(ch)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: chart %q: %v", ErrInvalidChart, ch.Metadata.Name, err)
	}
	return c, nil
}

// cloneChart copies everything Helm may write to, recursively through
// subcharts; file contents, which Helm only reads, are shared. Files under
// gadget/ of the top chart are left out.
func cloneChart(ch *helmchart.Chart) *helmchart.Chart {
	md := *ch.Metadata
	md.Sources = slices.Clone(md.Sources)
	md.Keywords = slices.Clone(md.Keywords)
	md.Annotations = maps.Clone(md.Annotations)
	md.Maintainers = make([]*helmchart.Maintainer, 0, len(ch.Metadata.Maintainers))
	for _, m := range ch.Metadata.Maintainers {
		if m != nil {
			mc := *m
			md.Maintainers = append(md.Maintainers, &mc)
		}
	}
	md.Dependencies = make([]*helmchart.Dependency, 0, len(ch.Metadata.Dependencies))
	for _, d := range ch.Metadata.Dependencies {
		if d != nil {
			dc := *d
			dc.Tags = slices.Clone(d.Tags)
			dc.ImportValues = slices.Clone(d.ImportValues)
			md.Dependencies = append(md.Dependencies, &dc)
		}
	}
	c := &helmchart.Chart{
		Raw:       ch.Raw,
		Metadata:  &md,
		Lock:      ch.Lock,
		Templates: slices.Clone(ch.Templates),
		Values:    copyValues(ch.Values),
		Schema:    ch.Schema,
	}
	for _, f := range ch.Files {
		if f != nil && (ch.Parent() != nil || !strings.HasPrefix(f.Name, GadgetDir)) {
			c.Files = append(c.Files, f)
		}
	}
	for _, dep := range ch.Dependencies() {
		c.AddDependency(cloneChart(dep))
	}
	return c
}

// copyValues deep-copies a values tree (maps and slices; leaves are
// immutable scalars).
func copyValues(v map[string]any) map[string]any {
	if v == nil {
		return nil
	}
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = copyValue(x)
	}
	return out
}

func copyValue(x any) any {
	switch t := x.(type) {
	case map[string]any:
		return copyValues(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = copyValue(e)
		}
		return out
	default:
		return x
	}
}
