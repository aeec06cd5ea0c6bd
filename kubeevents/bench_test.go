package kubeevents

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// benchChanges is the number of ConfigMap updates per iteration.
const benchChanges = 2000

// latencies collects change-to-event latencies by change sequence number.
type latencies struct {
	mu    sync.Mutex
	sent  []time.Time
	seen  []time.Duration
	count int
	last  time.Time
	all   chan struct{}
}

func newLatencies(n int) *latencies {
	return &latencies{sent: make([]time.Time, n), seen: make([]time.Duration, n), all: make(chan struct{})}
}

func (l *latencies) send(seq int) {
	l.mu.Lock()
	l.sent[seq] = time.Now()
	l.mu.Unlock()
}

// observe records the event for an object whose data.seq is seq.
func (l *latencies) observe(seq string) {
	i, err := strconv.Atoi(seq)
	if err != nil {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < 0 || i >= len(l.sent) || l.seen[i] != 0 || l.sent[i].IsZero() {
		return
	}
	l.seen[i] = now.Sub(l.sent[i])
	l.count++
	l.last = now
	if l.count == len(l.sent) {
		close(l.all)
	}
}

func (l *latencies) report(start time.Time) (perSec, p50, p99 float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := slices.Clone(l.seen)
	slices.Sort(d)
	ms := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond) }
	return float64(len(d)) / l.last.Sub(start).Seconds(), ms(0.50), ms(0.99)
}

// BenchmarkMonitorVsInformer makes 2,000 ConfigMap updates (100 ConfigMaps,
// 20 updates each, 8 writers) watched at the same time by one monitor and by
// a bare client-go informer on the same objects, and reports events per
// second and p50/p99 change-to-event latency of each, and their ratios.
//
//	go test -run '^$' -bench MonitorVsInformer -benchtime 3x ./kubeevents/
func BenchmarkMonitorVsInformer(b *testing.B) {
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	dyn := dynamic.NewForConfigOrDie(env.Config)
	const objects, writers = 100, 8
	var sums [6]float64
	iterations := 0
	b.StopTimer()
	for range b.N {
		ns := env.Namespace(b)
		for i := range objects {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("cm-%03d", i)}, Data: map[string]string{"seq": "-1"}}
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		mon, inf := newLatencies(benchChanges), newLatencies(benchChanges)

		m, err := New(Options{Config: env.Config, Logger: logr.Discard()})
		if err != nil {
			b.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = m.Start(mctx) })
		if err := m.AddMonitor(ctx, Config{ID: "bench", APIVersion: "v1", Kind: "ConfigMap", Namespace: &NamespaceSelector{MatchNames: []string{ns}},
			ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true}); err != nil {
			b.Fatal(err)
		}
		if err := m.StartMonitor("bench"); err != nil {
			b.Fatal(err)
		}
		if ev := <-m.Events(); ev.Type != TypeSynchronization || len(ev.Objects) != objects {
			b.Fatalf("first event: %s with %d objects", ev.Type, len(ev.Objects))
		}
		wg.Go(func() {
			for ev := range m.Events() {
				for _, o := range ev.Objects {
					if o.Object != nil {
						s, _, _ := unstructured.NestedString(o.Object.Object, "data", "seq")
						mon.observe(s)
					}
				}
			}
		})

		ri := dyn.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(ns)
		informer := cache.NewSharedIndexInformer(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return ri.List(ctx, o) },
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return ri.Watch(ctx, o)
			},
		}, &unstructured.Unstructured{}, 0, cache.Indexers{})
		reg, _ := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) {
			s, _, _ := unstructured.NestedString(obj.(*unstructured.Unstructured).Object, "data", "seq")
			inf.observe(s)
		}})
		wg.Go(func() { informer.RunWithContext(mctx) })
		if !cache.WaitForCacheSync(mctx.Done(), reg.HasSynced) {
			b.Fatal("informer did not sync")
		}

		b.StartTimer()
		start := time.Now()
		var writes sync.WaitGroup
		for w := range writers {
			writes.Go(func() {
				for seq := w; seq < benchChanges; seq += writers {
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("cm-%03d", seq%objects)}, Data: map[string]string{"seq": strconv.Itoa(seq)}}
					mon.send(seq)
					inf.send(seq)
					if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		writes.Wait()
		for _, l := range []*latencies{mon, inf} {
			select {
			case <-l.all:
			case <-time.After(time.Minute):
				b.Fatalf("only %d of %d events arrived", l.count, benchChanges)
			}
		}
		b.StopTimer()
		cancel()
		m.Stop()
		wg.Wait()

		mps, m50, m99 := mon.report(start)
		ips, i50, i99 := inf.report(start)
		for i, v := range []float64{mps, m50, m99, ips, i50, i99} {
			sums[i] += v
		}
		iterations++
	}
	n := float64(iterations)
	b.ReportMetric(sums[0]/n, "monitor-events/s")
	b.ReportMetric(sums[1]/n, "monitor-p50-ms")
	b.ReportMetric(sums[2]/n, "monitor-p99-ms")
	b.ReportMetric(sums[3]/n, "informer-events/s")
	b.ReportMetric(sums[4]/n, "informer-p50-ms")
	b.ReportMetric(sums[5]/n, "informer-p99-ms")
	b.ReportMetric(sums[0]/sums[3], "events/s-ratio")
	b.ReportMetric(sums[1]/sums[4], "p50-ratio")
	b.ReportMetric(sums[2]/sums[5], "p99-ratio")
}
