package loader

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
	helmchart "helm.sh/helm/v3/pkg/chart"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`)

func (c *checker) requirements(ch *helmchart.Chart) {
	raw := c.read(ChartFile)
	r := Requirements{KubeVersion: ch.Metadata.KubeVersion}
	if r.KubeVersion != "" {
		if _, err := semver.NewConstraint(r.KubeVersion); err != nil {
			c.add(ChartFile, lineOfKey(raw, "kubeVersion"), "kubeVersion %q is not a semver constraint: %v", r.KubeVersion, err)
		}
	}
	if s, ok := ch.Metadata.Annotations[v1alpha1.RequiresAnnotation]; ok {
		reqs, err := ParseRequires(s)
		if err != nil {
			c.add(ChartFile, lineOfKey(raw, v1alpha1.RequiresAnnotation), "annotation %s: %v", v1alpha1.RequiresAnnotation, err)
		}
		for _, q := range reqs {
			if q.Name == ch.Metadata.Name {
				c.add(ChartFile, lineOfKey(raw, v1alpha1.RequiresAnnotation), "annotation %s: the package requires itself", v1alpha1.RequiresAnnotation)
			}
		}
		r.Requires = reqs
	}
	if s, ok := ch.Metadata.Annotations[v1alpha1.OrderAnnotation]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			c.add(ChartFile, lineOfKey(raw, v1alpha1.OrderAnnotation), "annotation %s is %q: want an integer", v1alpha1.OrderAnnotation, s)
		}
		r.Order = n
	}
	c.pkg.Requirements = r
}

// ParseRequires parses the gadgetpm.io/requires annotation: "name
// constraint" pairs separated by commas, e.g. "net-base >=1.2, proc-base
// ^2". A constraint may itself hold commas (">=1, <2"): a comma starts a
// new pair only when a package name follows it. A name alone means "*".
func ParseRequires(s string) ([]Requirement, error) {
	var out []Requirement
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		fields := strings.Fields(part)
		if nameRE.MatchString(fields[0]) && !looksLikeVersion(fields[0]) {
			out = append(out, Requirement{Name: fields[0], Constraint: strings.Join(fields[1:], " ")})
			continue
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%q: want \"name constraint\" pairs separated by commas, e.g. \"net-base >=1.2, proc-base ^2\"", s)
		}
		last := &out[len(out)-1]
		last.Constraint = strings.TrimSpace(last.Constraint + ", " + part)
	}
	for i := range out {
		q := &out[i]
		if seen[q.Name] {
			return nil, fmt.Errorf("package %s is listed twice", q.Name)
		}
		seen[q.Name] = true
		if q.Constraint == "" {
			q.Constraint = "*"
		}
		if _, err := semver.NewConstraint(q.Constraint); err != nil {
			return nil, fmt.Errorf("%s: constraint %q: %v", q.Name, q.Constraint, err)
		}
	}
	return out, nil
}

func looksLikeVersion(s string) bool {
	return regexp.MustCompile(`^v?[0-9]+(\.[0-9x*]+)*$`).MatchString(s)
}
