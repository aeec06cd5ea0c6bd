package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func newResumed(t *testing.T) *Scheduler {
	t.Helper()
	s := New(Options{})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_ = s.Stop(ctx)
	})
	s.Resume()
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// drain returns the events published so far as "key:+" (enabled) or
// "key:-" (disabled), flips only unless all is set.
func drain(t *testing.T, s *Scheduler) []Event {
	t.Helper()
	var out []Event
	for {
		select {
		case ev := <-s.Events():
			out = append(out, ev)
		case <-time.After(20 * time.Millisecond):
			return out
		}
	}
}

func flips(evs []Event) string {
	var parts []string
	for _, ev := range evs {
		if !ev.Flipped {
			continue
		}
		sign := "-"
		if ev.Enabled {
			sign = "+"
		}
		parts = append(parts, ev.Key+sign)
	}
	return strings.Join(parts, " ")
}

func pkg(key, version string, requires ...string) Package {
	p := Package{Key: key, Version: version, Enabled: true}
	for _, r := range requires {
		name, constraint, _ := strings.Cut(r, " ")
		p.Requires = append(p.Requires, Requirement{Name: name, Constraint: constraint})
	}
	return p
}

func TestReasons(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, s *Scheduler)
		pkg       Package
		wantCause Cause
		want      string
	}{
		{
			name:      "all checks pass",
			pkg:       pkg("gadget.exec", "1.0.0"),
			wantCause: CauseEnabled,
		},
		{
			name:      "spec.enabled false comes first",
			pkg:       Package{Key: "gadget.exec", KubeVersion: ">=9", Requires: []Requirement{{Name: "missing"}}},
			wantCause: CauseDisabledBySpec,
			want:      "disabled by spec.enabled: false",
		},
		{
			name:      "cluster too old",
			setup:     func(t *testing.T, s *Scheduler) { must(t, s.SetKubeVersion("v1.29.3")) },
			pkg:       Package{Key: "gadget.exec", Enabled: true, KubeVersion: ">=1.30.0-0"},
			wantCause: CauseKubeVersion,
			want:      "requires Kubernetes >=1.30.0-0, the cluster runs v1.29.3",
		},
		{
			name:      "cluster version unknown",
			pkg:       Package{Key: "gadget.exec", Enabled: true, KubeVersion: ">=1.30"},
			wantCause: CauseKubeVersion,
			want:      "requires Kubernetes >=1.30, the cluster's version is not known yet",
		},
		{
			name:      "cluster version satisfies",
			setup:     func(t *testing.T, s *Scheduler) { must(t, s.SetKubeVersion("v1.36.3")) },
			pkg:       Package{Key: "gadget.exec", Enabled: true, KubeVersion: ">=1.30.0-0"},
			wantCause: CauseEnabled,
		},
		{
			name:      "required package not installed",
			pkg:       pkg("gadget.exec", "1.0.0", "net-base >=1.2"),
			wantCause: CauseRequirement,
			want:      "requires net-base >=1.2, which is not installed",
		},
		{
			name: "required package too old",
			setup: func(t *testing.T, s *Scheduler) {
				must(t, s.AddPackage(Package{Key: "gadget.net-base", Name: "net-base", Version: "1.1", Enabled: true}))
				must(t, s.SetState("gadget.net-base", true, ""))
			},
			pkg:       pkg("gadget.exec", "1.0.0", "net-base >=1.2"),
			wantCause: CauseRequirement,
			want:      "requires net-base >=1.2, found 1.1",
		},
		{
			name: "running version counts over the declared one",
			setup: func(t *testing.T, s *Scheduler) {
				must(t, s.AddPackage(Package{Key: "gadget.net-base", Name: "net-base", Version: "1.3.0", Enabled: true}))
				must(t, s.SetState("gadget.net-base", true, "1.1.9"))
			},
			pkg:       pkg("gadget.exec", "1.0.0", "net-base >=1.2"),
			wantCause: CauseRequirement,
			want:      "requires net-base >=1.2, found 1.1.9",
		},
		{
			name: "required package not running",
			setup: func(t *testing.T, s *Scheduler) {
				must(t, s.AddPackage(Package{Key: "gadget.net-base", Name: "net-base", Version: "1.2.0", Enabled: true}))
			},
			pkg:       pkg("gadget.exec", "1.0.0", "net-base >=1.2"),
			wantCause: CauseRequirement,
			want:      "requires net-base >=1.2, which is not running yet",
		},
		{
			name: "required package disabled",
			setup: func(t *testing.T, s *Scheduler) {
				must(t, s.AddPackage(Package{Key: "gadget.net-base", Name: "net-base", Version: "1.2.0"}))
				must(t, s.SetState("gadget.net-base", true, ""))
			},
			pkg:       pkg("gadget.exec", "1.0.0", "net-base"),
			wantCause: CauseRequirement,
			want:      "requires net-base, which is disabled: disabled by spec.enabled: false",
		},
		{
			name: "required package running at a satisfying version",
			setup: func(t *testing.T, s *Scheduler) {
				must(t, s.AddPackage(Package{Key: "gadget.net-base", Name: "net-base", Version: "1.2.0", Enabled: true}))
				must(t, s.SetState("gadget.net-base", true, ""))
			},
			pkg:       pkg("gadget.exec", "1.0.0", "net-base >=1.2, <2"),
			wantCause: CauseEnabled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newResumed(t)
			if tt.setup != nil {
				tt.setup(t, s)
			}
			must(t, s.AddPackage(tt.pkg))
			st, ok := s.Status(tt.pkg.Key)
			if !ok {
				t.Fatal("no status")
			}
			wantEnabled := tt.wantCause == CauseEnabled
			if st.Enabled != wantEnabled || st.Cause != tt.wantCause || st.Reason != tt.want {
				t.Fatalf("status %+v, want enabled=%v cause=%s reason %q", st, wantEnabled, tt.wantCause, tt.want)
			}
		})
	}
}

func TestStartsPaused(t *testing.T) {
	s := New(Options{})
	defer func() { _ = s.Stop(context.Background()) }()
	must(t, s.AddPackage(pkg("ns.a", "1.0.0")))
	must(t, s.AddPackage(pkg("ns.b", "1.0.0", "ns.a")))
	if evs := drain(t, s); len(evs) != 0 {
		t.Fatalf("events while paused: %+v", evs)
	}
	if st, _ := s.Status("ns.a"); st.Cause != CauseNotEvaluated || st.Enabled {
		t.Fatalf("status while paused %+v", st)
	}
	s.Resume()
	evs := drain(t, s)
	// First evaluation: every package is published, disables first.
	if got, want := flips(evs), "ns.b- ns.a+"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if evs[0].Reason != "requires ns.a, which is not running yet" {
		t.Fatalf("reason %q", evs[0].Reason)
	}
	s.Pause()
	must(t, s.SetState("ns.a", true, ""))
	if evs := drain(t, s); len(evs) != 0 {
		t.Fatalf("events while paused: %+v", evs)
	}
	s.Resume()
	if got := flips(drain(t, s)); got != "ns.b+" {
		t.Fatalf("events %q", got)
	}
}

func TestFlipOrder(t *testing.T) {
	s := newResumed(t)
	// c requires b requires a.
	must(t, s.AddPackage(pkg("ns.a", "1.0.0")))
	must(t, s.AddPackage(pkg("ns.b", "1.0.0", "ns.a")))
	must(t, s.AddPackage(pkg("ns.c", "1.0.0", "ns.b")))
	for _, k := range []string{"ns.a", "ns.b", "ns.c"} {
		must(t, s.SetState(k, true, ""))
	}
	drain(t, s)

	a := pkg("ns.a", "1.0.0")
	a.Enabled = false
	must(t, s.AddPackage(a))
	evs := drain(t, s)
	if got, want := flips(evs), "ns.c- ns.b- ns.a-"; got != want {
		t.Fatalf("disable events %q, want dependents first %q", got, want)
	}
	if evs[1].Reason != "requires ns.a, which is disabled: disabled by spec.enabled: false" || evs[1].Cause != CauseRequirement {
		t.Fatalf("b's reason %+v", evs[1])
	}

	a.Enabled = true
	must(t, s.AddPackage(a))
	if got, want := flips(drain(t, s)), "ns.a+ ns.b+ ns.c+"; got != want {
		t.Fatalf("enable events %q, want dependencies first %q", got, want)
	}

	// A reason change of a disabled package is published without a flip.
	must(t, s.SetState("ns.a", false, ""))
	drain(t, s)
	must(t, s.SetState("ns.a", true, "0.9.0"))
	drain(t, s)
	b := pkg("ns.b", "1.0.0", "ns.a >=1")
	must(t, s.AddPackage(b))
	evs = drain(t, s)
	if got, want := flips(evs), "ns.c- ns.b-"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	must(t, s.SetState("ns.a", true, "0.9.5"))
	evs = drain(t, s)
	// c's reason quotes b's, so both change; neither flips.
	if len(evs) != 2 || evs[0].Flipped || evs[1].Flipped || evs[1].Key != "ns.b" || evs[1].Reason != "requires ns.a >=1, found 0.9.5" ||
		evs[0].Reason != "requires ns.b, which is disabled: requires ns.a >=1, found 0.9.5" {
		t.Fatalf("events %+v, want reason changes for ns.c and ns.b", evs)
	}
}

func TestDiamond(t *testing.T) {
	s := newResumed(t)
	// d requires b and c, both require a. Added in reverse on purpose.
	must(t, s.AddPackage(pkg("ns.d", "1.0.0", "ns.b", "ns.c")))
	must(t, s.AddPackage(pkg("ns.c", "1.0.0", "ns.a")))
	must(t, s.AddPackage(pkg("ns.b", "1.0.0", "ns.a")))
	must(t, s.AddPackage(pkg("ns.a", "1.0.0")))
	order, err := s.Order()
	must(t, err)
	if got, want := strings.Join(order, " "), "ns.a ns.b ns.c ns.d"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
	drain(t, s)
	for _, k := range order {
		must(t, s.SetState(k, true, ""))
	}
	if got, want := flips(drain(t, s)), "ns.b+ ns.c+ ns.d+"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if st, _ := s.Status("ns.d"); !st.Enabled {
		t.Fatalf("d %+v", st)
	}
}

func TestOrderTieBreak(t *testing.T) {
	s := New(Options{})
	p := func(key string, order int) Package { return Package{Key: key, Order: order} }
	for _, pk := range []Package{p("ns.z", 0), p("ns.y", 10), p("ns.x", 5), p("ns.w", 5)} {
		must(t, s.AddPackage(pk))
	}
	order, err := s.Order()
	must(t, err)
	if got, want := strings.Join(order, " "), "ns.z ns.w ns.x ns.y"; got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestCycle(t *testing.T) {
	s := newResumed(t)
	must(t, s.AddPackage(pkg("ns.a", "1.0.0", "ns.b")))
	must(t, s.AddPackage(pkg("ns.b", "1.0.0", "ns.c")))
	must(t, s.AddPackage(pkg("ns.c", "1.0.0", "ns.a")))
	must(t, s.AddPackage(pkg("ns.d", "1.0.0", "ns.a")))
	must(t, s.AddPackage(pkg("ns.e", "1.0.0")))
	must(t, s.AddPackage(pkg("ns.f", "1.0.0", "ns.g")))
	must(t, s.AddPackage(pkg("ns.g", "1.0.0", "ns.f")))

	order, err := s.Order()
	if err == nil {
		t.Fatal("no error for a cycle")
	}
	for _, want := range []string{"dependency cycle: ns.a -> ns.b -> ns.c -> ns.a", "dependency cycle: ns.f -> ns.g -> ns.f"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(order) != 7 {
		t.Fatalf("order %v does not hold every package", order)
	}
	for _, k := range []string{"ns.a", "ns.b", "ns.c"} {
		st, _ := s.Status(k)
		if st.Enabled || st.Cause != CauseCycle || st.Reason != "dependency cycle: ns.a -> ns.b -> ns.c -> ns.a" {
			t.Fatalf("%s: %+v", k, st)
		}
	}
	if st, _ := s.Status("ns.d"); st.Cause != CauseRequirement || !strings.Contains(st.Reason, "requires ns.a, which is disabled: dependency cycle") {
		t.Fatalf("d: %+v", st)
	}
	if st, _ := s.Status("ns.e"); !st.Enabled {
		t.Fatalf("e, outside the cycle: %+v", st)
	}
	// Breaking the cycle re-enables its members.
	must(t, s.AddPackage(pkg("ns.c", "1.0.0")))
	_, err = s.Order()
	if err == nil || strings.Contains(err.Error(), "ns.a") {
		t.Fatalf("error after breaking a -> b -> c: %v", err)
	}
	if st, _ := s.Status("ns.c"); !st.Enabled {
		t.Fatalf("c: %+v", st)
	}
}

func TestCycleAmongManyDescribed(t *testing.T) {
	s := New(Options{})
	// a <-> b and b <-> c: one component without a simple cycle through
	// all three.
	must(t, s.AddPackage(pkg("ns.a", "1.0.0", "ns.b")))
	must(t, s.AddPackage(pkg("ns.b", "1.0.0", "ns.a", "ns.c")))
	must(t, s.AddPackage(pkg("ns.c", "1.0.0", "ns.b")))
	_, err := s.Order()
	if err == nil || !strings.Contains(err.Error(), "dependency cycle among ns.a, ns.b, ns.c") {
		t.Fatalf("Order = %v", err)
	}
}

func TestRemoveWhileOthersDependOnIt(t *testing.T) {
	s := newResumed(t)
	must(t, s.AddPackage(Package{Key: "gadget.net-base", Name: "net-base", Version: "1.2.0", Enabled: true}))
	must(t, s.AddPackage(pkg("gadget.dns", "1.0.0", "net-base >=1.2")))
	must(t, s.AddPackage(pkg("gadget.tcp", "1.0.0", "net-base")))
	must(t, s.SetState("gadget.net-base", true, ""))
	drain(t, s)

	s.RemovePackage("gadget.net-base")
	evs := drain(t, s)
	if got, want := flips(evs), "gadget.tcp- gadget.dns- gadget.net-base-"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if evs[0].Reason != "requires net-base, which is not installed" || evs[2].Cause != CauseRemoved {
		t.Fatalf("events %+v", evs)
	}
	if _, ok := s.Status("gadget.net-base"); ok {
		t.Fatal("removed package still has a status")
	}
	order, err := s.Order()
	must(t, err)
	if got := fmt.Sprint(order); got != "[gadget.dns gadget.tcp]" {
		t.Fatalf("order %s", got)
	}
	s.RemovePackage("gadget.unknown") // no-op
}

func TestBadInput(t *testing.T) {
	s := newResumed(t)
	tests := []struct {
		name string
		pkg  Package
		want string
	}{
		{"empty key", Package{}, "add package: key is empty"},
		{"bad version", Package{Key: "ns.a", Version: "one"}, `add package ns.a: version "one" is not a semantic version`},
		{"empty requirement name", Package{Key: "ns.a", Requires: []Requirement{{Constraint: ">=1"}}}, "add package ns.a: requires[0]: name is empty"},
		{"bad constraint", Package{Key: "ns.a", Requires: []Requirement{{Name: "net-base", Constraint: ">=1.x.y"}}}, `add package ns.a: requires[0] net-base: constraint ">=1.x.y" is not a semver constraint`},
		{"requires itself", Package{Key: "ns.a", Name: "a", Requires: []Requirement{{Name: "a"}}}, "add package ns.a: requires[0]: a package cannot require itself (dependency cycle: ns.a -> ns.a)"},
		{"bad kubeVersion", Package{Key: "ns.a", KubeVersion: "newest"}, `add package ns.a: kubeVersion "newest" is not a semver constraint`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.AddPackage(tt.pkg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("AddPackage = %v, want %q", err, tt.want)
			}
		})
	}
	if len(s.Statuses()) != 0 {
		t.Fatalf("bad input stored: %+v", s.Statuses())
	}
	if err := s.SetState("ns.nope", true, ""); err == nil || !strings.Contains(err.Error(), "set state of package ns.nope: no such package") {
		t.Fatalf("SetState = %v", err)
	}
	must(t, s.AddPackage(pkg("ns.a", "1.0.0")))
	if err := s.SetState("ns.a", true, "latest"); err == nil || !strings.Contains(err.Error(), `version "latest" is not a semantic version`) {
		t.Fatalf("SetState = %v", err)
	}
	if err := s.SetKubeVersion("kubernetes"); err == nil || !strings.Contains(err.Error(), `set Kubernetes version: "kubernetes" is not a semantic version`) {
		t.Fatalf("SetKubeVersion = %v", err)
	}
}

func TestStopClosesEvents(t *testing.T) {
	s := New(Options{})
	s.Resume()
	must(t, s.AddPackage(pkg("ns.a", "1.0.0")))
	got := make(chan []string)
	go func() {
		var keys []string
		for ev := range s.Events() {
			keys = append(keys, ev.Status.Key)
		}
		got <- keys // only once the channel is closed
	}()
	must(t, s.Stop(context.Background()))
	must(t, s.AddPackage(pkg("ns.b", "1.0.0"))) // after Stop: recorded, not published, no panic
	must(t, s.Stop(context.Background()))
	select {
	case keys := <-got:
		if len(keys) != 1 || keys[0] != "ns.a" {
			t.Fatalf("events before Stop closed the channel: %v, want [ns.a] (nothing published after Stop)", keys)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Events() was not closed by Stop")
	}
	if st, ok := s.Status("ns.b"); !ok || st.Key != "ns.b" {
		t.Fatalf("a package added after Stop is not recorded: %+v, %v", st, ok)
	}
}
