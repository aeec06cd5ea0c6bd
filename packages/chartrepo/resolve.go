package chartrepo

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Resolve chooses the newest version of name in idx that satisfies
// constraint (Helm's syntax; "" means "*"). Prereleases match only when the
// constraint names one. The error names the package, the constraint and
// what the repository has, and wraps ErrNotFound when nothing matches.
func Resolve(idx *Index, name, constraint string) (Version, error) {
	if strings.TrimSpace(constraint) == "" {
		constraint = "*"
	}
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return Version{}, fmt.Errorf("version constraint %q for %s: %w (want e.g. '>=1.2 <2', '^1.4', '*')", constraint, name, err)
	}
	versions, ok := idx.Packages[name]
	if !ok {
		return Version{}, fmt.Errorf("package %s: %w in the repository (it has %s)", name, ErrNotFound, listOr(idx.Names(), "no packages"))
	}
	var best *semver.Version
	var chosen Version
	var seen []string
	for _, v := range versions {
		seen = append(seen, v.Version)
		sv, err := semver.NewVersion(v.Version)
		if err != nil {
			continue // not a semver: unreachable by any constraint
		}
		if !c.Check(sv) {
			continue
		}
		if best == nil || sv.GreaterThan(best) {
			best, chosen = sv, v
		}
	}
	if best == nil {
		return Version{}, fmt.Errorf("package %s: no version matching %q: %w (available: %s)", name, constraint, ErrNotFound, listOr(firstN(seen, 10), "none"))
	}
	return chosen, nil
}

func listOr(xs []string, empty string) string {
	if len(xs) == 0 {
		return empty
	}
	return strings.Join(xs, ", ")
}

func firstN(xs []string, n int) []string {
	if len(xs) > n {
		return append(append([]string(nil), xs[:n]...), "…")
	}
	return xs
}
