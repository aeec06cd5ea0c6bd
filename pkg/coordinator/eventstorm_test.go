package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/queue"
)

// Storm size: stormObjects ConfigMaps, each created once and updated
// until the storm holds stormEvents kube events.
const (
	stormObjects = 50
	stormEvents  = 2000
	// stormHeapBound is the most the operator's heap may grow while the
	// events wait behind the stuck hook (measured: under 1 MiB; without
	// compaction, where every event is a queued run holding a copy of its
	// object, about 10 MiB). docs/benchmarks.md "Bounded events".
	stormHeapBound = 5 << 20
)

// TestEventStormWhileHookIsStuck (fault injection, case 7 of the
// durability issue): 2,000 ConfigMap events arrive while the hook of
// their binding is stuck on a gate file. What waits for it stays bounded
// by the objects (or by the caps), and once released the hook sees every
// object with its latest state: compacted per object, turned into one
// re-Synchronization past --max-pending-events-per-binding, or split over
// runs of at most --max-binding-contexts-per-run contexts.
func TestEventStormWhileHookIsStuck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits coordinator.HookLimits
		// pending is how many compacted entries wait at the peak; runs
		// how many queued runs hold them.
		pending, runs int
		// maxContexts bounds every run's binding contexts.
		maxContexts int
		// resync: the hook gets one Synchronization with every object.
		resync bool
	}{
		{name: "compacted per object", pending: stormObjects, runs: 1, maxContexts: stormObjects},
		{name: "past the per-binding cap, one re-Synchronization", limits: coordinator.HookLimits{MaxPendingEventsPerBinding: 20},
			pending: 1, runs: 1, maxContexts: 1, resync: true},
		{name: "split over runs of at most 10 contexts", limits: coordinator.HookLimits{MaxBindingContextsPerRun: 10},
			pending: stormObjects, runs: stormObjects / 10, maxContexts: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			dir := t.TempDir()
			journal, gate := filepath.Join(dir, "journal"), filepath.Join(dir, "gate")
			config := fmt.Sprintf(`{"configVersion":"v1","kubernetes":[{"name":"storm","kind":"ConfigMap",
 "namespace":{"nameSelector":{"matchNames":[%q]}},"labelSelector":{"matchLabels":{"storm":"yes"}},
 "executeHookOnSynchronization":false}]}`, ns)
			// Stuck until the test creates the gate file (at most 3 minutes).
			block := fmt.Sprintf(`i=0; while [ ! -e %q ] && [ $i -lt 1800 ]; do sleep 0.1; i=$((i+1)); done`, gate)
			repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "storm", Hooks: map[string]string{
				"10-storm.sh": recorder("storm", journal, config, block),
			}})
			createRepo(t, "storm-"+ns, repoDir)
			op, _, _ := startWith(t, func(o *coordinator.Options) { o.HookLimits = tc.limits })
			t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) })
			createPackage(t, ns, "storm", "storm-"+ns)
			waitFor(t, ns, "storm", "Running", running)
			key := ns + ".storm"

			ctx := context.Background()
			cms := make([]*corev1.ConfigMap, stormObjects)
			create := func(i int) {
				t.Helper()
				cms[i] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("cm-%02d", i), Labels: map[string]string{"storm": "yes"}},
					Data: map[string]string{"v": "0"}}
				if err := env.Client.Create(ctx, cms[i]); err != nil {
					t.Fatal(err)
				}
			}
			// The first event's run starts and sticks.
			create(0)
			eventually.True(t, 60*time.Second, "the hook's first run to start", func() bool { return len(readJournal(t, journal)) > 0 })
			base := heap()

			// The storm: every object created, then updated round-robin.
			events := 1
			for i := 1; i < stormObjects; i++ {
				create(i)
				events++
			}
			final := make([]int, stormObjects)
			for v := 1; events < stormEvents; v++ {
				for i := 0; i < stormObjects && events < stormEvents; i++ {
					patch := client.MergeFrom(cms[i].DeepCopy())
					cms[i].Data["v"] = strconv.Itoa(v)
					if err := env.Client.Patch(ctx, cms[i], patch); err != nil {
						t.Fatal(err)
					}
					final[i] = v
					events++
				}
			}

			// Everything delivered waits, compacted, behind the stuck run.
			eventually.NoError(t, 60*time.Second, "the storm's events to wait compacted", func() error {
				inRuns, undelivered := op.PendingKubeEvents()
				if inRuns != tc.pending || undelivered != 0 {
					return fmt.Errorf("%d entries in queued runs (want %d), %d not delivered", inRuns, tc.pending, undelivered)
				}
				return nil
			})
			grew := int64(heap()) - int64(base)
			t.Logf("%d events for %d objects behind a stuck hook: %d entries in %d queued runs; heap grew %.1f MiB", stormEvents, stormObjects, tc.pending, tc.runs, float64(grew)/(1<<20))
			if grew > stormHeapBound {
				t.Errorf("heap grew %d bytes while the events waited, more than the bound %d", grew, stormHeapBound)
			}
			for _, q := range op.Dump().Queues.Queues {
				if q.Name == queue.PackageQueueName(key, "") && q.Length > tc.runs {
					t.Errorf("queue %s holds %d runs, want at most %d", q.Name, q.Length, tc.runs)
				}
			}

			// Released, the hook sees every object with its latest state.
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			eventually.NoError(t, 90*time.Second, "the hook to see every object's latest state", func() error {
				runs := readJournal(t, journal)
				latest := map[string]string{}
				for ri, r := range runs {
					if len(r.contexts) > tc.maxContexts && ri > 0 {
						return fmt.Errorf("run %d got %d binding contexts, more than %d", ri, len(r.contexts), tc.maxContexts)
					}
					seen := map[string]bool{}
					for _, c := range r.contexts {
						objs := contextObjects(c)
						if c["type"] == "Synchronization" && ri > 0 && !tc.resync {
							return fmt.Errorf("run %d: unexpected Synchronization", ri)
						}
						for name, v := range objs {
							if c["type"] == "Event" && seen[name] {
								return fmt.Errorf("run %d holds two events of %s: not compacted", ri, name)
							}
							seen[name] = true
							latest[name] = v
						}
					}
				}
				for i, v := range final {
					name := fmt.Sprintf("cm-%02d", i)
					if latest[name] != strconv.Itoa(v) {
						return fmt.Errorf("%s: the hook last saw v=%q, want %d (%d runs)", name, latest[name], v, len(runs))
					}
				}
				if tc.resync && !hasSync(runs, stormObjects) {
					return fmt.Errorf("no run got a Synchronization of all %d objects", stormObjects)
				}
				return nil
			})
		})
	}
}

// heap is the live heap after a collection.
func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// contextObjects maps the names of a binding context's objects (its
// object, or a Synchronization's objects) to their data.v.
func contextObjects(c map[string]any) map[string]string {
	out := map[string]string{}
	add := func(o any) {
		obj, _ := o.(map[string]any)
		md, _ := obj["metadata"].(map[string]any)
		data, _ := obj["data"].(map[string]any)
		name, _ := md["name"].(string)
		v, _ := data["v"].(string)
		if name != "" {
			out[name] = v
		}
	}
	if o, ok := c["object"]; ok {
		add(o)
	}
	objs, _ := c["objects"].([]any)
	for _, e := range objs {
		m, _ := e.(map[string]any)
		add(m["object"])
	}
	return out
}

// hasSync reports whether a run got a Synchronization of n objects.
func hasSync(runs []run, n int) bool {
	for _, r := range runs {
		for _, c := range r.contexts {
			if c["type"] == "Synchronization" && len(contextObjects(c)) == n {
				return true
			}
		}
	}
	return false
}
