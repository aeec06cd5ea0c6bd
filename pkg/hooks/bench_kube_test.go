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
// the real events manager to a trivial bash hook, one hook-run task per
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

// pendingTasks is the benchmark's stand-in for one queue: FIFO, one worker,
// optional compaction of consecutive mergeable tasks.
type pendingTasks struct {
	mu    sync.Mutex
	tasks []*benchTask
	wake  chan struct{}
}

type benchTask struct {
	task *RunTask
	seqs []int
}

func (p *pendingTasks) push(t *benchTask) {
	p.mu.Lock()
	p.tasks = append(p.tasks, t)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// pop takes the head, merged with every following task of the same key when
// compact is set.
func (p *pendingTasks) pop(compact bool) *benchTask {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tasks) == 0 {
		return nil
	}
	head := p.tasks[0]
	p.tasks = p.tasks[1:]
	for compact && len(p.tasks) > 0 && p.tasks[0].task.MergeKey() != "" && p.tasks[0].task.MergeKey() == head.task.MergeKey() {
		next := p.tasks[0]
		p.tasks = p.tasks[1:]
		var merged queue.Task = head.task.Merge(next.task)
		head = &benchTask{task: merged.(*RunTask), seqs: append(append([]int(nil), head.seqs...), next.seqs...)}
	}
	return head
}

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
	started := make([]time.Time, total)
	pending := &pendingTasks{wake: make(chan struct{}, 1)}

	// Reader: every event becomes a task.
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
			pending.push(&benchTask{task: NewRunTask(deps, h, nil, Trigger{Type: Kubernetes, Binding: ev.Binding, Event: &ev}), seqs: []int{seq}})
		}
	}()

	// Worker: runs tasks in order until every event was handled.
	done := make(chan roundResult, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		handled, runs := 0, 0
		for handled < total {
			t := pending.pop(compact)
			if t == nil {
				select {
				case <-pending.wake:
					continue
				case <-mctx.Done():
					return
				}
			}
			now := time.Now()
			for _, s := range t.seqs {
				started[s] = now
			}
			if err := t.task.Execute(mctx); err != nil {
				b.Error(err)
				return
			}
			handled += len(t.seqs)
			runs++
		}
		done <- roundResult{runs: runs}
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
	var res roundResult
	select {
	case res = <-done:
	case <-time.After(10 * time.Minute):
		b.Fatal("events not handled within 10 minutes")
	}
	res.elapsed = time.Since(start)
	for i := range sent {
		res.latencies = append(res.latencies, started[i].Sub(sent[i]))
	}
	return res
}
