package hooks

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/queue"
)

const (
	benchObjects = 100
	benchUpdates = 20 // per object: 2,000 changes in all
	benchWriters = 8
)

// BenchmarkKubernetesBindingThroughput sends 2,000 ConfigMap changes through
// the real event monitors to a trivial bash hook, one hook-run task per
// event, executed in order by one worker, with and without compaction (the
// worker merging every waiting task of the hook into the one it starts, as
// the queue does). It reports events handled per second and the p50/p99
// latency from sending the update to the start of the hook run that
// handles it.
func BenchmarkKubernetesBindingThroughput(b *testing.B) {
	for _, compact := range []bool{false, true} {
		b.Run(fmt.Sprintf("compaction=%v", compact), func(b *testing.B) {
			var lat []time.Duration
			var elapsed time.Duration
			runs := 0
			for i := 0; i < b.N; i++ {
				r := kubeBindingRound(b, compact)
				lat = append(lat, r.latencies...)
				elapsed += r.elapsed
				runs += r.runs
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			events := float64(len(lat))
			b.ReportMetric(events/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(runs)/float64(b.N), "hook-runs")
		})
	}
}

type roundResult struct {
	latencies []time.Duration
	elapsed   time.Duration
	runs      int
}

// seqTask carries the sequence numbers of the changes a hook run handles,
// so the benchmark can time each change; merging concatenates them in order
// as the RunTask concatenates its binding contexts.
type seqTask struct {
	*RunTask
	seqs []int
	at   *roundClock
}

// roundClock records when each change's hook run started and counts what
// was handled; only the queue's single worker writes to it.
type roundClock struct {
	started []time.Time
	handled int
	runs    int
	total   int
	done    chan struct{}
	fail    func(args ...any)
}

func (t *seqTask) Execute(ctx context.Context) error {
	now := time.Now()
	for _, s := range t.seqs {
		t.at.started[s] = now
	}
	err := t.RunTask.Execute(ctx)
	if err != nil {
		t.at.fail("hook run:", err)
	}
	t.at.handled += len(t.seqs)
	t.at.runs++
	if t.at.handled == t.at.total {
		close(t.at.done)
	}
	return err
}

func (t *seqTask) Merge(next queue.Task) queue.Task {
	n := next.(*seqTask)
	return &seqTask{
		RunTask: t.RunTask.Merge(n.RunTask).(*RunTask),
		seqs:    append(append([]int(nil), t.seqs...), n.seqs...),
		at:      t.at,
	}
}

// unmergeable hides Merge and MergeKey so the queue runs tasks one by one.
type unmergeable struct{ t *seqTask }

func (u unmergeable) Name() string                      { return u.t.Name() }
func (u unmergeable) Execute(ctx context.Context) error { return u.t.Execute(ctx) }

func kubeBindingRound(b *testing.B, compact bool) roundResult {
	b.Helper()
	ctx := context.Background()
	ns := env.Namespace(b)
	config := fmt.Sprintf("configVersion: v1\nkubernetes:\n- name: cms\n  kind: ConfigMap\n  namespace: {nameSelector: {matchNames: [%s]}}", ns)
	dir := newPackage(b, map[string]string{"hooks/trivial": bashHook(config, `read -r _ < "$BINDING_CONTEXT_PATH" || true`)})
	h := loadHook(b, dir, "trivial")
	for i := 0; i < benchObjects; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("cm-%03d", i)}, Data: map[string]string{"seq": "-1"}}
		if err := env.Client.Create(ctx, cm); err != nil {
			b.Fatal(err)
		}
	}

	mgr, err := kubeevents.New(kubeevents.Options{Config: env.Config})
	if err != nil {
		b.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = mgr.Start(mctx)
	}()
	mon := h.Config.Kubernetes[0].Monitor
	if err := mgr.AddMonitor(ctx, mon); err != nil {
		b.Fatal(err)
	}
	if err := mgr.StartMonitor(mon.ID); err != nil {
		b.Fatal(err)
	}
	deps := TaskDeps{Runner: NewRunner(RunnerOptions{}), Snapshots: mgr}
	if ev := <-mgr.Events(); ev.Type != kubeevents.TypeSynchronization {
		b.Fatalf("first event %s", ev.Type)
	}

	total := benchObjects * benchUpdates
	sent := make([]time.Time, total)
	clock := &roundClock{started: make([]time.Time, total), total: total, done: make(chan struct{}), fail: b.Error}
	started := clock.started
	queues := queue.NewService(queue.Options{})
	// The owner of a Service reads its events; Stop delivers what is left.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-queues.Events():
			case <-mctx.Done():
				return
			}
		}
	}()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := queues.Stop(sctx); err != nil {
			b.Errorf("stop queues: %v", err)
		}
	}()

	// Reader: every event becomes a hook-run task in the package's queue,
	// whose single worker runs them in order and, with compaction on, merges
	// consecutive waiting runs of the hook.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; n < total; n++ {
			var ev kubeevents.Event
			select {
			case ev = <-mgr.Events():
			case <-mctx.Done():
				return
			}
			seq, _ := strconv.Atoi(ev.Objects[0].Object.Object["data"].(map[string]any)["seq"].(string))
			t := &seqTask{RunTask: NewRunTask(deps, h, nil, Trigger{Type: Kubernetes, Binding: ev.Binding, Event: &ev}), seqs: []int{seq}, at: clock}
			var task queue.Task = t
			if !compact {
				task = unmergeable{t}
			}
			if err := queues.Enqueue(queue.PackageQueueName("bench.pkg", ""), task, queue.MaxAttempts(1)); err != nil {
				b.Error(err)
				return
			}
		}
	}()

	// Writers: 8 at once, each owning every 8th ConfigMap so no two write
	// the same object; update u of object o carries sequence u*100+o.
	start := time.Now()
	var wwg sync.WaitGroup
	for w := 0; w < benchWriters; w++ {
		wwg.Add(1)
		go func(w int) {
			defer wwg.Done()
			for u := 0; u < benchUpdates; u++ {
				for o := w; o < benchObjects; o += benchWriters {
					seq := u*benchObjects + o
					cm := &corev1.ConfigMap{}
					if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("cm-%03d", o)}, cm); err != nil {
						b.Error(err)
						return
					}
					cm.Data["seq"] = strconv.Itoa(seq)
					sent[seq] = time.Now()
					if err := env.Client.Update(ctx, cm); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}(w)
	}
	wwg.Wait()
	select {
	case <-clock.done:
	case <-time.After(10 * time.Minute):
		b.Fatal("events not handled within 10 minutes")
	}
	res := roundResult{runs: clock.runs}
	res.elapsed = time.Since(start)
	for i := range sent {
		res.latencies = append(res.latencies, started[i].Sub(sent[i]))
	}
	return res
}
