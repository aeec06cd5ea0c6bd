package deps

import (
	"fmt"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Requirement is one package another needs.
type Requirement struct {
	// Name of the required package (its chart name).
	Name string
	// Constraint on its version; "" means any.
	Constraint string
}

// Node is one installed package.
type Node struct {
	// Name is the package (chart) name.
	Name string
	// Version installed; "" when not loaded yet.
	Version string
	// Requires from its Chart.yaml.
	Requires []Requirement
	// Order from gadgetpm.io/order; lower starts first among independent
	// packages.
	Order int
}

// Graph is a set of installed packages by name.
type Graph map[string]Node

// Unmet lists why name's requirements are not met, one sentence each;
// empty when they are.
func (g Graph) Unmet(name string) []string {
	n, ok := g[name]
	if !ok {
		return []string{fmt.Sprintf("package %s is not installed", name)}
	}
	var out []string
	for _, r := range n.Requires {
		dep, ok := g[r.Name]
		c := r.Constraint
		if c == "" {
			c = "*"
		}
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("requires %s %s, which no GadgetPackage installs", r.Name, c))
		case dep.Version == "":
			out = append(out, fmt.Sprintf("requires %s %s, which is not loaded yet", r.Name, c))
		default:
			sc, err := semver.NewConstraint(c)
			if err != nil {
				out = append(out, fmt.Sprintf("requires %s %q: not a semver constraint", r.Name, c))
				continue
			}
			v, err := semver.NewVersion(dep.Version)
			if err != nil || !sc.Check(v) {
				out = append(out, fmt.Sprintf("requires %s %s, found %s", r.Name, c, dep.Version))
			}
		}
	}
	return out
}

// Dependents returns the installed packages that require name, sorted.
func (g Graph) Dependents(name string) []string {
	var out []string
	for _, n := range g {
		for _, r := range n.Requires {
			if r.Name == name {
				out = append(out, n.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// CycleError names a dependency cycle.
type CycleError struct {
	// Cycle lists the packages, the first repeated at the end.
	Cycle []string
}

func (e *CycleError) Error() string {
	return "dependency cycle: " + strings.Join(e.Cycle, " -> ")
}

// Order returns every package, required ones before those requiring them,
// ties broken by Order then name. Requirements on packages not in g are
// ignored (Unmet reports them). A cycle is a *CycleError naming it.
func (g Graph) Order() ([]string, error) {
	names := make([]string, 0, len(g))
	for n := range g {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := g[names[i]], g[names[j]]
		if a.Order != b.Order {
			return a.Order < b.Order
		}
		return a.Name < b.Name
	})
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var out, stack []string
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case done:
			return nil
		case visiting:
			i := len(stack) - 1
			for stack[i] != n {
				i--
			}
			return &CycleError{Cycle: append(append([]string(nil), stack[i:]...), n)}
		}
		state[n] = visiting
		stack = append(stack, n)
		reqs := append([]Requirement(nil), g[n].Requires...)
		sort.Slice(reqs, func(i, j int) bool { return reqs[i].Name < reqs[j].Name })
		for _, r := range reqs {
			if _, ok := g[r.Name]; !ok {
				continue
			}
			if err := visit(r.Name); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		out = append(out, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReverseOrder is Order reversed: dependents first, for teardown.
func (g Graph) ReverseOrder() ([]string, error) {
	o, err := g.Order()
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(o)-1; i < j; i, j = i+1, j-1 {
		o[i], o[j] = o[j], o[i]
	}
	return o, nil
}
