package scheduler

import (
	"container/heap"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// graph is the dependency graph of the packages at one moment.
type graph struct {
	deps    map[string][]string // key -> keys it requires (sorted)
	cycles  [][]string          // each a closed path "a, b, ..., a", or the members
	inCycle map[string]string   // key -> description of its cycle
	order   []string            // cycle members (sorted), then a topological order
}

// graph builds the graph; s.mu must be held.
func (s *Scheduler) graph() *graph {
	byName := map[string][]string{}
	keys := make([]string, 0, len(s.pkgs))
	for k, st := range s.pkgs {
		byName[st.pkg.Name] = append(byName[st.pkg.Name], k)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	g := &graph{deps: map[string][]string{}, inCycle: map[string]string{}}
	for _, k := range keys {
		seen := map[string]bool{}
		for _, r := range s.pkgs[k].pkg.Requires {
			for _, d := range byName[r.Name] {
				if d != k && !seen[d] {
					seen[d] = true
					g.deps[k] = append(g.deps[k], d)
				}
			}
		}
		sort.Strings(g.deps[k])
	}
	g.findCycles(keys)

	var members []string
	for k := range g.inCycle {
		members = append(members, k)
	}
	sort.Strings(members)
	g.order = append(g.order, members...)

	// Kahn's algorithm over the rest; edges into cycles count as met.
	pending := map[string]int{}
	dependents := map[string][]string{}
	ready := &keyHeap{order: map[string]int{}}
	for _, k := range keys {
		ready.order[k] = s.pkgs[k].pkg.Order
		if _, ok := g.inCycle[k]; ok {
			continue
		}
		for _, d := range g.deps[k] {
			if _, ok := g.inCycle[d]; ok {
				continue
			}
			pending[k]++
			dependents[d] = append(dependents[d], k)
		}
		if pending[k] == 0 {
			heap.Push(ready, k)
		}
	}
	for ready.Len() > 0 {
		k := heap.Pop(ready).(string)
		g.order = append(g.order, k)
		for _, dep := range dependents[k] {
			if pending[dep]--; pending[dep] == 0 {
				heap.Push(ready, dep)
			}
		}
	}
	return g
}

// findCycles marks the members of every strongly connected component with
// more than one package (Tarjan's algorithm).
func (g *graph) findCycles(keys []string) {
	index := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	next := 0
	var visit func(k string)
	visit = func(k string) {
		index[k], low[k] = next, next
		next++
		stack = append(stack, k)
		onStack[k] = true
		for _, d := range g.deps[k] {
			if _, seen := index[d]; !seen {
				visit(d)
				low[k] = min(low[k], low[d])
			} else if onStack[d] {
				low[k] = min(low[k], index[d])
			}
		}
		if low[k] != index[k] {
			return
		}
		var scc []string
		for {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[top] = false
			scc = append(scc, top)
			if top == k {
				break
			}
		}
		if len(scc) > 1 {
			sort.Strings(scc)
			desc := g.describeCycle(scc)
			g.cycles = append(g.cycles, scc)
			for _, m := range scc {
				g.inCycle[m] = desc
			}
		}
	}
	for _, k := range keys {
		if _, seen := index[k]; !seen {
			visit(k)
		}
	}
	sort.Slice(g.cycles, func(i, j int) bool { return g.cycles[i][0] < g.cycles[j][0] })
}

// describeCycle writes a component as a closed path through all its
// members when there is a simple one, else lists them.
func (g *graph) describeCycle(scc []string) string {
	member := map[string]bool{}
	for _, m := range scc {
		member[m] = true
	}
	path := []string{scc[0]}
	visited := map[string]bool{scc[0]: true}
	for cur := scc[0]; len(path) < len(scc); {
		moved := false
		for _, d := range g.deps[cur] {
			if member[d] && !visited[d] {
				path, visited[d], cur, moved = append(path, d), true, d, true
				break
			}
		}
		if !moved {
			break
		}
	}
	if len(path) == len(scc) {
		for _, d := range g.deps[path[len(path)-1]] {
			if d == scc[0] {
				return "dependency cycle: " + strings.Join(append(path, scc[0]), " -> ")
			}
		}
	}
	return "dependency cycle among " + strings.Join(scc, ", ")
}

func (g *graph) cycleError() error {
	if len(g.cycles) == 0 {
		return nil
	}
	var errs []error
	for _, c := range g.cycles {
		errs = append(errs, errors.New(g.inCycle[c[0]]))
	}
	return fmt.Errorf("order packages: %w", errors.Join(errs...))
}

// keyHeap pops the key with the lowest (Order, Key).
type keyHeap struct {
	keys  []string
	order map[string]int
}

func (h *keyHeap) Len() int { return len(h.keys) }
func (h *keyHeap) Less(i, j int) bool {
	a, b := h.keys[i], h.keys[j]
	if h.order[a] != h.order[b] {
		return h.order[a] < h.order[b]
	}
	return a < b
}
func (h *keyHeap) Swap(i, j int) { h.keys[i], h.keys[j] = h.keys[j], h.keys[i] }
func (h *keyHeap) Push(x any)    { h.keys = append(h.keys, x.(string)) }
func (h *keyHeap) Pop() any {
	k := h.keys[len(h.keys)-1]
	h.keys = h.keys[:len(h.keys)-1]
	return k
}
