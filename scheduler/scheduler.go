package scheduler

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"

	"github.com/gadgetpm/gadgetpm/queue/outbox"
)

// Requirement is a package another one needs.
type Requirement struct {
	// Name is the required package's Name.
	Name string
	// Constraint is a semver constraint such as ">=1.2, <2"; empty means
	// any version.
	Constraint string
}

// Package is what the scheduler knows of one package.
type Package struct {
	// Key identifies the package ("<ns>.<name>"). Required.
	Key string
	// Name is what other packages' requirements refer to (the chart
	// name). Default: Key.
	Name string
	// Version is the package's semantic version, used for requirements
	// until SetState reports the running version.
	Version string
	// Enabled is the package's spec.enabled.
	Enabled bool
	// Requires lists required packages, which must be enabled and running
	// at a satisfying version.
	Requires []Requirement
	// KubeVersion is a semver constraint on the cluster's version (the
	// chart's kubeVersion); empty means any.
	KubeVersion string
	// Order breaks ties between packages that do not depend on each other:
	// lower starts first (the chart's gadgetpm.io/order), then by Key.
	Order int
}

// Cause names the checker that decided a package's enablement, in a form
// fit for a condition's Reason.
type Cause string

// Causes, in checker order.
const (
	CauseEnabled        Cause = "Enabled"
	CauseNotEvaluated   Cause = "NotEvaluated"
	CauseDisabledBySpec Cause = "DisabledBySpec"
	CauseKubeVersion    Cause = "KubeVersionMismatch"
	CauseCycle          Cause = "DependencyCycle"
	CauseRequirement    Cause = "RequirementNotMet"
	CauseRemoved        Cause = "Removed"
)

// Status is a package's enablement.
type Status struct {
	Key     string `json:"key" yaml:"key"`
	Enabled bool   `json:"enabled" yaml:"enabled"`
	Cause   Cause  `json:"cause" yaml:"cause"`
	// Reason says, in words a user acts on, why the package is disabled;
	// empty when enabled.
	Reason string `json:"reason,omitempty" yaml:"reason,omitempty"`
}

// Event reports a change of a package's Status.
type Event struct {
	Status
	// Flipped is true when Enabled changed (or on a package's first
	// evaluation); false when only the reason of a disabled package did.
	Flipped bool
}

// Options configure a Scheduler. The zero value means every default.
type Options struct {
	// EventBuffer is the buffer of the Events channel; further events
	// wait in memory until read. Default 256.
	EventBuffer int
}

type pkgState struct {
	pkg      Package
	requires []*semver.Constraints // parallel to pkg.Requires; nil means any
	kube     *semver.Constraints
	running  bool
	version  string // running version from SetState
	status   Status
	// published is true once an event for this package went out.
	published bool
}

// Scheduler decides which packages are enabled. It starts paused: changes
// are recorded but nothing is evaluated or published until Resume. It is
// safe for concurrent use; Stop ends event delivery.
type Scheduler struct {
	events *outbox.Outbox[Event]

	mu sync.Mutex
	// Guarded by mu. removed holds events of packages removed while
	// paused, published on Resume.
	pkgs        map[string]*pkgState
	kubeVersion *semver.Version
	paused      bool
	removed     []Event
}

// New returns a paused Scheduler.
func New(opts Options) *Scheduler {
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 256
	}
	return &Scheduler{
		events: outbox.New[Event](opts.EventBuffer),
		pkgs:   make(map[string]*pkgState),
		paused: true,
	}
}

// Events delivers enablement changes: on a package's first evaluation,
// when Enabled flips, and when a disabled package's reason changes. Within
// one change, disables come first, dependents before their dependencies,
// then enables, dependencies before their dependents. The channel is
// closed by Stop.
func (s *Scheduler) Events() <-chan Event { return s.events.C() }

// Stop stops publishing, delivers unread events until ctx ends or the
// reader has taken none for a second, and closes Events. Events still
// undelivered then are dropped and the error says how many.
func (s *Scheduler) Stop(ctx context.Context) error {
	if err := s.events.Close(ctx); err != nil {
		return fmt.Errorf("stop scheduler: %w", err)
	}
	return nil
}

// AddPackage adds a package or replaces the one with the same Key. Bad
// input is an error naming the package, the field and what was expected,
// and changes nothing. A requirement on a package not (yet) added is not
// an error: the package stays disabled with a reason saying so.
func (s *Scheduler) AddPackage(p Package) error {
	st, err := newPkgState(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.pkgs[p.Key]; old != nil {
		st.running, st.version, st.status, st.published = old.running, old.version, old.status, old.published
	} else {
		st.status = Status{Key: p.Key, Cause: CauseNotEvaluated, Reason: "not evaluated yet: the scheduler is paused"}
	}
	s.pkgs[p.Key] = st
	s.evaluate()
	return nil
}

func newPkgState(p Package) (*pkgState, error) {
	if p.Key == "" {
		return nil, fmt.Errorf("add package: key is empty")
	}
	if p.Name == "" {
		p.Name = p.Key
	}
	if p.Version != "" {
		if _, err := semver.NewVersion(p.Version); err != nil {
			return nil, fmt.Errorf("add package %s: version %q is not a semantic version: %w", p.Key, p.Version, err)
		}
	}
	st := &pkgState{pkg: p, requires: make([]*semver.Constraints, len(p.Requires))}
	for i, r := range p.Requires {
		if r.Name == "" {
			return nil, fmt.Errorf("add package %s: requires[%d]: name is empty", p.Key, i)
		}
		if r.Name == p.Name || r.Name == p.Key {
			return nil, fmt.Errorf("add package %s: requires[%d]: a package cannot require itself (dependency cycle: %s -> %s)", p.Key, i, p.Key, p.Key)
		}
		if strings.TrimSpace(r.Constraint) == "" {
			continue
		}
		c, err := semver.NewConstraint(r.Constraint)
		if err != nil {
			return nil, fmt.Errorf("add package %s: requires[%d] %s: constraint %q is not a semver constraint such as \">=1.2, <2\": %w", p.Key, i, r.Name, r.Constraint, err)
		}
		st.requires[i] = c
	}
	if strings.TrimSpace(p.KubeVersion) != "" {
		c, err := semver.NewConstraint(p.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("add package %s: kubeVersion %q is not a semver constraint such as \">=1.30.0-0\": %w", p.Key, p.KubeVersion, err)
		}
		st.kube = c
	}
	st.pkg.Requires = append([]Requirement(nil), p.Requires...)
	return st, nil
}

// RemovePackage removes a package. Its dependents are re-evaluated (and
// disabled first); then, if it had been published, a Removed event for it
// follows. Removing an unknown key does nothing.
func (s *Scheduler) RemovePackage(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.pkgs[key]
	if old == nil {
		return
	}
	delete(s.pkgs, key)
	if !old.published {
		return
	}
	ev := Event{Status: Status{Key: key, Cause: CauseRemoved, Reason: "removed"}, Flipped: old.status.Enabled}
	if s.paused {
		s.removed = append(s.removed, ev)
		return
	}
	s.evaluate()
	s.events.Put(ev)
}

// SetState records whether a package is running and at which version
// (empty keeps its declared Version); dependents are re-evaluated.
func (s *Scheduler) SetState(key string, running bool, version string) error {
	if version != "" {
		if _, err := semver.NewVersion(version); err != nil {
			return fmt.Errorf("set state of package %s: version %q is not a semantic version: %w", key, version, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pkgs[key]
	if st == nil {
		return fmt.Errorf("set state of package %s: no such package; add it first", key)
	}
	st.running, st.version = running, version
	s.evaluate()
	return nil
}

// SetKubeVersion records the cluster's version, such as "v1.36.3" (the
// API server's gitVersion, as Helm reads it).
func (s *Scheduler) SetKubeVersion(version string) error {
	v, err := semver.NewVersion(version)
	if err != nil {
		return fmt.Errorf("set Kubernetes version: %q is not a semantic version: %w", version, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kubeVersion = v
	s.evaluate()
	return nil
}

// Resume evaluates every package, publishes what changed while paused,
// and from then on evaluates on every change.
func (s *Scheduler) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = false
	s.evaluate()
	for _, ev := range s.removed {
		s.events.Put(ev)
	}
	s.removed = nil
}

// Pause stops evaluation until Resume; changes are still recorded.
func (s *Scheduler) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = true
}

// Status returns a package's enablement.
func (s *Scheduler) Status(key string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pkgs[key]
	if st == nil {
		return Status{}, false
	}
	return st.status, true
}

// Statuses returns every package's enablement, sorted by key.
func (s *Scheduler) Statuses() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.pkgs))
	for _, st := range s.pkgs {
		out = append(out, st.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Order returns every package key in start order: dependencies before
// dependents, ties broken by Package.Order then Key. With a dependency
// cycle it returns an error naming every package in each cycle, and the
// slice still holds every key (cycle members first) so that teardown can
// proceed.
func (s *Scheduler) Order() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.graph()
	return g.order, g.cycleError()
}
