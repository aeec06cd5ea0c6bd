package scheduler

import (
	"fmt"
	"sort"

	"github.com/Masterminds/semver/v3"
)

// checker decides one aspect of a package's enablement. It returns ok, or
// the cause and a reason a user acts on.
type checker func(s *Scheduler, g *graph, st *pkgState) (ok bool, cause Cause, reason string)

// checkers run in this order; the first that fails decides.
var checkers = []checker{
	checkEnabled,
	checkKubeVersion,
	checkCycle,
	checkRequirements,
}

func checkEnabled(_ *Scheduler, _ *graph, st *pkgState) (bool, Cause, string) {
	if st.pkg.Enabled {
		return true, "", ""
	}
	return false, CauseDisabledBySpec, "disabled by spec.enabled: false"
}

func checkKubeVersion(s *Scheduler, _ *graph, st *pkgState) (bool, Cause, string) {
	if st.kube == nil {
		return true, "", ""
	}
	if s.kubeVersion == nil {
		return false, CauseKubeVersion, fmt.Sprintf("requires Kubernetes %s, the cluster's version is not known yet", st.pkg.KubeVersion)
	}
	if st.kube.Check(s.kubeVersion) {
		return true, "", ""
	}
	return false, CauseKubeVersion, fmt.Sprintf("requires Kubernetes %s, the cluster runs %s", st.pkg.KubeVersion, s.kubeVersion.Original())
}

func checkCycle(_ *Scheduler, g *graph, st *pkgState) (bool, Cause, string) {
	if desc, ok := g.inCycle[st.pkg.Key]; ok {
		return false, CauseCycle, desc
	}
	return true, "", ""
}

func checkRequirements(s *Scheduler, _ *graph, st *pkgState) (bool, Cause, string) {
	for i, r := range st.pkg.Requires {
		if ok, reason := s.requirementMet(st, r, st.requires[i]); !ok {
			return false, CauseRequirement, reason
		}
	}
	return true, "", ""
}

// requirementMet is true when some package of that name is enabled and
// running at a satisfying version; otherwise it explains the first
// candidate's shortfall.
func (s *Scheduler) requirementMet(st *pkgState, r Requirement, c *semver.Constraints) (bool, string) {
	what := "requires " + r.Name
	if c != nil {
		what += " " + r.Constraint
	}
	var candidates []*pkgState
	for _, p := range s.pkgs {
		if p != st && p.pkg.Name == r.Name {
			candidates = append(candidates, p)
		}
	}
	if len(candidates) == 0 {
		return false, what + ", which is not installed"
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].pkg.Key < candidates[j].pkg.Key })
	var first string
	for _, p := range candidates {
		reason := dependencyShortfall(p, c)
		if reason == "" {
			return true, ""
		}
		if first == "" {
			first = reason
		}
	}
	return false, what + ", " + first
}

func dependencyShortfall(p *pkgState, c *semver.Constraints) string {
	version := p.version
	if version == "" {
		version = p.pkg.Version
	}
	if c != nil {
		if version == "" {
			return "whose version is not known yet"
		}
		v, err := semver.NewVersion(version)
		if err != nil {
			return fmt.Sprintf("found version %q, which is not a semantic version", version)
		}
		if !c.Check(v) {
			return "found " + version
		}
	}
	if !p.status.Enabled {
		return "which is disabled: " + p.status.Reason
	}
	if !p.running {
		return "which is not running yet"
	}
	return ""
}

// evaluate recomputes every status in dependency order and publishes the
// changes; s.mu must be held. Nothing happens while paused.
func (s *Scheduler) evaluate() {
	if s.paused {
		return
	}
	g := s.graph()
	var disables, enables []Event
	for _, k := range g.order {
		st := s.pkgs[k]
		next := Status{Key: k, Enabled: true, Cause: CauseEnabled}
		for _, check := range checkers {
			if ok, cause, reason := check(s, g, st); !ok {
				next = Status{Key: k, Cause: cause, Reason: reason}
				break
			}
		}
		prev := st.status
		st.status = next
		flipped := !st.published || prev.Enabled != next.Enabled
		if !flipped && prev == next {
			continue
		}
		st.published = true
		ev := Event{Status: next, Flipped: flipped}
		if next.Enabled {
			enables = append(enables, ev)
		} else {
			disables = append(disables, ev)
		}
	}
	// The outbox never blocks, and publishing under the lock keeps the
	// events of concurrent changes in the order the changes were made.
	for i := len(disables) - 1; i >= 0; i-- {
		s.events.Put(disables[i])
	}
	for _, ev := range enables {
		s.events.Put(ev)
	}
}
