package layering_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/gadgetpm/gadgetpm"

// rule forbids packages matching from to depend, directly or not, on
// packages matching any of to. Patterns are module-relative ("pkg/gadget",
// "pkg/gadget/...") or, with a dot in the first element, full import paths
// ("helm.sh/..."). except lists packages of from the rule does not cover.
// yetAbsent lists patterns of from that may match no package yet: the rule
// covers them as soon as they exist.
type rule struct {
	why       string
	from      []string
	except    []string
	to        []string
	yetAbsent []string
}

// rules are the layers of docs/development.md ("Layers"); keep the two
// together.
var rules = []rule{
	{
		why:  "the gadget runtime runs on nodes and in `gadgetpm gadget run` without a cluster: it knows neither Kubernetes nor Helm nor the rest of the module",
		from: []string{"pkg/gadget/..."},
		to: []string{"k8s.io/...", "sigs.k8s.io/...", "helm.sh/...",
			"pkg/apis/...", "pkg/trace/...", "pkg/coordinator/...", "pkg/process/...", "pkg/debugserver/...", "pkg/hooks/...", "pkg/nelm/...", "packages/...", "kubeevents/...", "queue/...", "scheduler/...", "cmd/..."},
	},
	{
		why:    "queues, schedulers and time triggers are generic services: they know no packages, hooks, releases or Kubernetes objects (the Prometheus adapter of the queue metrics publishes on controller-runtime's registry, by design)",
		from:   []string{"queue/...", "scheduler/..."},
		except: []string{"queue/prommetrics"},
		to:     []string{"helm.sh/...", "sigs.k8s.io/...", "pkg/...", "packages/...", "kubeevents/...", "cmd/..."},
	},
	{
		why:  "the API types are the contract every layer shares: they import nothing of the module but each other",
		from: []string{"pkg/apis/..."},
		to:   []string{"pkg/gadget/...", "pkg/trace/...", "pkg/coordinator/...", "pkg/process/...", "pkg/debugserver/...", "pkg/hooks/...", "pkg/nelm/...", "pkg/objectpatch/...", "pkg/restmapping/...", "packages/...", "kubeevents/...", "queue/...", "scheduler/...", "internal/...", "cmd/..."},
	},
	{
		why:  "the services the coordinator wires (kube events, object patcher, hooks and their credentials, Helm releases) do not know packages, Traces or the coordinator",
		from: []string{"kubeevents/...", "pkg/objectpatch/...", "pkg/hooks/...", "pkg/hookcreds/...", "pkg/nelm/...", "pkg/restmapping/..."},
		to:   []string{"packages/...", "pkg/trace/...", "pkg/coordinator/...", "pkg/process/...", "pkg/debugserver/...", "pkg/gadget/...", "cmd/..."},
	},
	{
		why:  "who a package acts as is a leaf every service may use: it imports nothing of the module but the API types",
		from: []string{"pkg/identity/..."},
		to: []string{"pkg/gadget/...", "pkg/trace/...", "pkg/coordinator/...", "pkg/process/...", "pkg/debugserver/...", "pkg/hooks/...", "pkg/hookcreds/...", "pkg/nelm/...", "pkg/objectpatch/...",
			"pkg/restmapping/...", "packages/...", "kubeevents/...", "queue/...", "scheduler/...", "internal/...", "cmd/...", "helm.sh/..."},
	},
	{
		why:  "hooks take their API credentials through hooks.Credentials: the protocol does not know where tokens come from",
		from: []string{"pkg/hooks/..."},
		to:   []string{"pkg/hookcreds/..."},
	},
	{
		why:  "the hook sandbox's init runs before main in every binary that links it: it imports nothing of the module and no Kubernetes or Helm library",
		from: []string{"pkg/hooks/sandbox"},
		to:   []string{"k8s.io/...", "sigs.k8s.io/...", "helm.sh/...", "github.com/gadgetpm/gadgetpm/..."},
	},
	{
		why:  "the process's one REST mapper is shared by every service: it depends on none of them",
		from: []string{"pkg/restmapping/..."},
		to: []string{"kubeevents/...", "pkg/objectpatch/...", "pkg/hooks/...", "pkg/nelm/...", "pkg/apis/...", "queue/...", "scheduler/...", "internal/...",
			"packages/...", "pkg/trace/...", "pkg/coordinator/...", "pkg/process/...", "pkg/debugserver/...", "pkg/gadget/...", "cmd/..."},
	},
	{
		why:  "package handling (repositories, download, loading, the manager, the hook host, the GadgetPackage controller) is wired by the coordinator, never the other way round",
		from: []string{"packages/..."},
		to:   []string{"pkg/coordinator/...", "pkg/process/...", "pkg/debugserver/...", "pkg/trace/...", "cmd/..."},
	},
	{
		why:  "the chart repository client reads and writes repositories only: the controllers, the package manager and the hook host use it, never the other way round",
		from: []string{"packages/chartrepo/..."},
		to:   []string{"packages/packagerepository/...", "packages/gadgetpackage/...", "packages/manager/...", "packages/hookhost/...", "packages/fetch/...", "pkg/nelm/...", "pkg/hooks/...", "kubeevents/..."},
	},
	{
		why:  "the repository access policy (which Secrets, which transports) is shared by the cluster role's repository client and the node role's download: it reads Secrets and links no Helm and no other package handling",
		from: []string{"packages/repoaccess"},
		to:   []string{"helm.sh/...", "packages/chartrepo/...", "packages/pull/...", "packages/fetch/...", "packages/packagerepository/...", "packages/store/..."},
	},
	{
		why:  "bounded downloads are shared by the cluster role's repository client and the node role's download: they link no Helm, no Kubernetes client and no other package handling",
		from: []string{"packages/download"},
		to:   []string{"helm.sh/...", "sigs.k8s.io/...", "k8s.io/...", "pkg/...", "packages/chartrepo/...", "packages/pull/...", "packages/fetch/...", "packages/repoaccess/...", "packages/store/..."},
	},
	{
		why:  "Inspektor Gadget images are read by both roles and by `gadgetpm gadget run`: the image-to-package step links no Helm, no Kubernetes client and no package handling but bounded downloads and the store",
		from: []string{"packages/igimage"},
		to:   []string{"helm.sh/...", "sigs.k8s.io/...", "k8s.io/...", "pkg/...", "packages/chartrepo/...", "packages/pull/...", "packages/fetch/...", "packages/loader/...", "packages/repoaccess/..."},
	},
	{
		why:  "the node role's Trace controller never runs hooks' tasks, Helm releases or the package manager",
		from: []string{"pkg/trace/..."},
		to:   []string{"pkg/coordinator/...", "pkg/process/...", "pkg/debugserver/...", "pkg/nelm/...", "packages/manager/...", "packages/gadgetpackage/...", "packages/hookhost/...", "pkg/objectpatch/...", "cmd/..."},
	},
	{
		why:  "the node role runs on every node, so what it links every node pays for in memory (docs/benchmarks.md): it gets package archives through packages/pull and links neither the Helm SDK nor the cluster role's package handling (nor does the debug server it serves the node's dump with)",
		from: []string{"pkg/trace/...", "packages/pull/...", "pkg/noderole/...", "pkg/streamserver/...", "cmd/gadgetpm-node/...", "pkg/debugserver/...", "pkg/dump/..."},
		to: []string{"helm.sh/...", "pkg/nelm/...", "pkg/hooks/...", "packages/loader/...", "packages/fetch/...", "packages/chartrepo/...",
			"packages/packagerepository/...", "packages/manager/...", "packages/hookhost/...", "pkg/coordinator/..."},
	},
	{
		why:  "the node role runs on every node and never links the cluster role (coordinator, process runner, Helm releases and actions, package manager, hook host), so a node binary need not",
		from: []string{"pkg/noderole/...", "pkg/streamserver/...", "internal/cmdline/...", "cmd/gadgetpm-node"},
		to:   []string{"pkg/coordinator/...", "pkg/process/...", "pkg/nelm/...", "helm.sh/helm/v3/pkg/action", "packages/manager/...", "packages/hookhost/...", "pkg/objectpatch/...", "cmd/..."},
	},
	{
		why:  "the dump's leaf types are filled by the hook host and printed by the debug server: they import nothing of the module",
		from: []string{"pkg/dump/..."},
		to:   []string{"github.com/gadgetpm/gadgetpm/..."},
	},
	{
		why:  "the debug server reads the state a Source gives it: it never reaches the coordinator or the process runner",
		from: []string{"pkg/debugserver/..."},
		to:   []string{"pkg/coordinator/...", "pkg/process/...", "cmd/..."},
	},
	{
		why:    "only the process runner constructs the coordinator (and the entry points, which run the process runner)",
		from:   []string{"..."},
		except: []string{"pkg/coordinator/...", "pkg/process", "cmd/gadgetpm", "internal/devenv"},
		to:     []string{"pkg/coordinator/..."},
	},
	{
		why:    "only the process entry points run the operator process",
		from:   []string{"..."},
		except: []string{"pkg/process", "cmd/gadgetpm", "internal/devenv"},
		to:     []string{"pkg/process/..."},
	},
	{
		why:    "test support never reaches a production binary",
		from:   []string{"..."},
		except: []string{"internal/testenv", "internal/testenv/controlplane", "internal/testlog", "internal/testroot", "internal/layering", "internal/bundled", "internal/chartcheck", "packages/packagetest", "pkg/gadget/gadgettest", "pkg/nelm/nelmtest", "pkg/noderole/noderoletest", "pkg/streamserver/streamservertest"},
		to:     []string{"internal/testenv", "internal/testlog", "internal/testroot", "packages/packagetest", "pkg/gadget/gadgettest", "pkg/nelm/nelmtest", "pkg/noderole/noderoletest", "pkg/streamserver/streamservertest"},
	},
}

// TestLayers fails on every forbidden dependency, naming the rule, the
// package, the dependency and the path of imports between them.
func TestLayers(t *testing.T) {
	graph := importGraph(t)
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		if p == module || strings.HasPrefix(p, module+"/") {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages of %s; the test must run inside the module", len(pkgs), module)
	}
	for _, r := range rules {
		for _, p := range pkgs {
			if !matchAny(r.from, p) || matchAny(r.except, p) {
				continue
			}
			// One line per forbidden pattern: the nearest package it
			// matches, with the imports that lead there.
			deps := reachable(graph, p)
			for _, pat := range r.to {
				for _, d := range deps {
					if match(pat, d) {
						t.Errorf("%s must not depend on %s (%s): %s", rel(p), pat, r.why, strings.Join(chain(graph, p, d), " -> "))
						break
					}
				}
			}
		}
	}
}

// TestRulesMatchPackages keeps the rules honest: a pattern that names no
// package any more (after a rename) would silently allow everything.
func TestRulesMatchPackages(t *testing.T) {
	graph := importGraph(t)
	for _, r := range rules {
		for _, pats := range [][]string{r.from, r.except} {
			for _, pat := range pats {
				if slices.Contains(r.yetAbsent, pat) {
					continue
				}
				found := false
				for p := range graph {
					if match(pat, p) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("rule %q: pattern %q matches no package of the module", r.why, pat)
				}
			}
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, pkg string
		want     bool
	}{
		{"pkg/gadget/...", module + "/pkg/gadget", true},
		{"pkg/gadget/...", module + "/pkg/gadget/sink", true},
		{"pkg/gadget/...", module + "/pkg/gadgetx", false},
		{"pkg/gadget", module + "/pkg/gadget/sink", false},
		{"...", module + "/queue", true},
		{"...", "k8s.io/api/core/v1", false},
		{"helm.sh/...", "helm.sh/helm/v3/pkg/chart", true},
		{"k8s.io/...", "sigs.k8s.io/yaml", false},
	} {
		if got := match(tc.pat, tc.pkg); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pat, tc.pkg, got, tc.want)
		}
	}
}

// importGraph returns every package the module's packages depend on, with
// its direct imports (non-test code only: tests may import anything).
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v: %s", err, stderr.String())
	}
	graph := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return graph
}

// reachable lists every package p depends on, directly or not, nearest
// first.
func reachable(graph map[string][]string, p string) []string {
	seen := map[string]bool{p: true}
	queue := []string{p}
	var out []string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, d := range graph[cur] {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
				queue = append(queue, d)
			}
		}
	}
	return out
}

// chain returns a shortest import path from p to d.
func chain(graph map[string][]string, p, d string) []string {
	prev := map[string]string{p: ""}
	queue := []string{p}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == d {
			break
		}
		for _, n := range graph[cur] {
			if _, ok := prev[n]; !ok {
				prev[n] = cur
				queue = append(queue, n)
			}
		}
	}
	var out []string
	for cur := d; cur != ""; cur = prev[cur] {
		out = append([]string{rel(cur)}, out...)
	}
	return out
}

func matchAny(pats []string, p string) bool {
	for _, pat := range pats {
		if match(pat, p) {
			return true
		}
	}
	return false
}

// match reports whether import path p matches pat (see rule).
func match(pat, p string) bool {
	full := pat
	if first, _, _ := strings.Cut(pat, "/"); !strings.Contains(first, ".") || pat == "..." {
		full = path.Join(module, pat)
		if pat == "..." {
			full = module + "/..."
		}
	}
	if base, ok := strings.CutSuffix(full, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == full
}

func rel(p string) string {
	if r, ok := strings.CutPrefix(p, module+"/"); ok {
		return r
	}
	return p
}
