package deps_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/deps"
)

func graph(nodes ...deps.Node) deps.Graph {
	g := deps.Graph{}
	for _, n := range nodes {
		g[n.Name] = n
	}
	return g
}

func req(name, c string) []deps.Requirement { return []deps.Requirement{{Name: name, Constraint: c}} }

func TestUnmet(t *testing.T) {
	g := graph(
		deps.Node{Name: "base", Version: "1.1.0"},
		deps.Node{Name: "ok", Version: "1.0.0", Requires: req("base", ">=1.0")},
		deps.Node{Name: "old", Version: "1.0.0", Requires: req("base", ">=1.2")},
		deps.Node{Name: "missing", Version: "1.0.0", Requires: req("net-base", "^2")},
		deps.Node{Name: "pending", Version: "1.0.0", Requires: req("loading", "")},
		deps.Node{Name: "loading"},
	)
	tests := map[string][]string{
		"ok":      nil,
		"old":     {"requires base >=1.2, found 1.1.0"},
		"missing": {"requires net-base ^2, which no GadgetPackage installs"},
		"pending": {"requires loading *, which is not loaded yet"},
		"ghost":   {"package ghost is not installed"},
	}
	for name, want := range tests {
		if got := g.Unmet(name); !reflect.DeepEqual(got, want) {
			t.Errorf("Unmet(%s) = %q, want %q", name, got, want)
		}
	}
	if got := g.Dependents("base"); !reflect.DeepEqual(got, []string{"ok", "old"}) {
		t.Errorf("Dependents(base) = %v", got)
	}
}

func TestOrder(t *testing.T) {
	g := graph(
		deps.Node{Name: "app", Requires: []deps.Requirement{{Name: "net"}, {Name: "proc"}}},
		deps.Node{Name: "net", Requires: req("base", "")},
		deps.Node{Name: "proc", Requires: req("base", ""), Order: -1},
		deps.Node{Name: "base"},
		deps.Node{Name: "solo", Order: 5},
		deps.Node{Name: "early", Order: -10},
	)
	got, err := g.Order()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"early", "base", "proc", "net", "app", "solo"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Order = %v, want %v", got, want)
	}
	rev, _ := g.ReverseOrder()
	if rev[0] != "solo" || rev[len(rev)-1] != "early" {
		t.Errorf("ReverseOrder = %v", rev)
	}
}

func TestOrderNamesTheCycle(t *testing.T) {
	g := graph(
		deps.Node{Name: "a", Requires: req("b", "")},
		deps.Node{Name: "b", Requires: req("c", "")},
		deps.Node{Name: "c", Requires: req("a", "")},
		deps.Node{Name: "d", Requires: req("a", "")},
	)
	_, err := g.Order()
	var ce *deps.CycleError
	if !errors.As(err, &ce) || err.Error() != "dependency cycle: a -> b -> c -> a" {
		t.Fatalf("err = %v", err)
	}
	self := graph(deps.Node{Name: "x", Requires: req("x", "")})
	if _, err := self.Order(); err == nil || err.Error() != "dependency cycle: x -> x" {
		t.Fatalf("self cycle: %v", err)
	}
}
