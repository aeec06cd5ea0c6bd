package trace_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

// The benchmarks measure the controller end to end against the test API
// server and the real kernel; each reports a named reference measured in
// the same run and the ratio to it. Run them with `make bench-trace`.

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// traceWatch delivers the Traces of a namespace as the API server sends
// them.
func traceWatch(b *testing.B, ns string) <-chan *gadgetv1alpha1.Trace {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	w, err := envWatch(ctx, ns, &gadgetv1alpha1.TraceList{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)
	out := make(chan *gadgetv1alpha1.Trace, 64)
	go func() {
		for ev := range w.ResultChan() {
			if tr, ok := ev.Object.(*gadgetv1alpha1.Trace); ok && ev.Type == watch.Modified {
				select {
				case out <- tr:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func waitFor(b *testing.B, ch <-chan *gadgetv1alpha1.Trace, cond func(*gadgetv1alpha1.Trace) bool) time.Time {
	timeout := time.After(60 * time.Second)
	for {
		select {
		case tr := <-ch:
			if cond(tr) {
				return time.Now()
			}
		case <-timeout:
			b.Fatal("no matching version within 60s")
		}
	}
}

// BenchmarkAnnotationToStarted: from the annotation patch to the watch
// delivering the Trace Started with the annotation gone. Reference: a
// bare status patch of the same Trace until the watch delivers it.
func BenchmarkAnnotationToStarted(b *testing.B) {
	requireRoot(b)
	ns := env.Namespace(b)
	n := startNode(b, "bench-latency", nodeOptions{})
	runningPackage(b, ns, "trace-exec", "trace-exec")
	tr := newTrace(b, ns, "lat", n.name, "trace-exec")
	ch := traceWatch(b, ns)
	k := key(tr)
	ctx := context.Background()
	var lat, ref []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		annotate(b, k, gadgetv1alpha1.OperationStart)
		t1 := waitFor(b, ch, stateIs(gadgetv1alpha1.TraceStarted))
		lat = append(lat, t1.Sub(t0))
		annotate(b, k, gadgetv1alpha1.OperationStop)
		waitFor(b, ch, stateIs(gadgetv1alpha1.TraceStopped))

		mark := "ref-" + strconv.Itoa(i)
		var cur gadgetv1alpha1.Trace
		if err := env.Client.Get(ctx, k, &cur); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		patch := []byte(`{"status":{"operationWarning":"` + mark + `"}}`)
		if err := env.Client.Status().Patch(ctx, &cur, client.RawPatch("application/merge-patch+json", patch)); err != nil {
			b.Fatal(err)
		}
		t1 = waitFor(b, ch, func(tr *gadgetv1alpha1.Trace) bool { return tr.Status.OperationWarning == mark })
		ref = append(ref, t1.Sub(t0))
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(lat, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(ref, 0.5)), "ref-p50-ms")
	b.ReportMetric(ms(percentile(ref, 0.99)), "ref-p99-ms")
	b.ReportMetric(float64(percentile(lat, 0.5))/float64(percentile(ref, 0.5)), "p50-ratio")
	b.ReportMetric(float64(percentile(lat, 0.99))/float64(percentile(ref, 0.99)), "p99-ratio")
}

// BenchmarkScheduleJitter: from a tick's scheduled time to the gadget
// attached, for a Trace on "@every 1s". Reference: the cron Manager's
// own delay from scheduled time to the trigger received, "@every 1s" in
// the same process meanwhile. b.N ticks.
func BenchmarkScheduleJitter(b *testing.B) {
	requireRoot(b)
	ns := env.Namespace(b)
	var mu sync.Mutex
	var delays []time.Duration
	n := startNode(b, "bench-jitter", nodeOptions{onRun: func(rs trace.RunStarted) {
		if rs.Op == "schedule" {
			mu.Lock()
			delays = append(delays, rs.Started.Sub(rs.Scheduled))
			mu.Unlock()
		}
	}})
	runningPackage(b, ns, "trace-exec", "trace-exec")

	ref := cron.New(cron.Options{})
	if err := ref.Add("bench", "ref", "@every 1s"); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	refDone := make(chan struct{})
	var refDelays []time.Duration
	go func() {
		defer close(refDone)
		for {
			select {
			case t := <-ref.Triggers():
				refDelays = append(refDelays, time.Since(t.Scheduled))
				ref.Done(t)
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { _ = ref.Start(ctx) }()

	b.ResetTimer()
	newTrace(b, ns, "jitter", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Schedule = "@every 1s"
		tr.Spec.Duration = &metav1.Duration{Duration: 300 * time.Millisecond}
	})
	eventually.NoError(b, time.Duration(b.N)*2*time.Second+30*time.Second, fmt.Sprintf("%d ticks to start", b.N), func() error {
		mu.Lock()
		got := len(delays)
		mu.Unlock()
		if got < b.N {
			return fmt.Errorf("%d started", got)
		}
		return nil
	})
	b.StopTimer()
	cancel()
	<-refDone
	_ = ref.Stop(context.Background())
	mu.Lock()
	defer mu.Unlock()
	b.ReportMetric(ms(percentile(delays, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(delays, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(refDelays, 0.5)), "ref-p50-ms")
	b.ReportMetric(ms(percentile(refDelays, 0.99)), "ref-p99-ms")
	b.ReportMetric(float64(percentile(delays, 0.5))/float64(percentile(refDelays, 0.5)), "p50-ratio")
}

// openWorkload fails count opens of a missing file from this process (a
// thread the Go runtime may move, so the gadget's pid filter is not used)
// and returns how long that took.
func openWorkload(count int) time.Duration {
	p := "/nonexistent/gadgetpm-bench"
	t0 := time.Now()
	for i := 0; i < count; i++ {
		if f, err := os.Open(p); err == nil {
			f.Close()
		}
	}
	return time.Since(t0)
}

// countSink counts the records of every data source: the cheapest
// consumer of the bare runtime. It closes started when it starts, after
// every stage before it (the program is attached).
type countSink struct {
	n       *int64
	started chan struct{}
}

func (s countSink) Name() string  { return "count" }
func (s countSink) Priority() int { return 100 }
func (s countSink) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	for _, ds := range gctx.DataSources() {
		ds.Subscribe("count", 100, func(*datasource.DataSource, *datasource.Record) error {
			*s.n++
			return nil
		})
	}
	return s, nil
}

func (s countSink) Start(*gadget.Context) error {
	close(s.started)
	return nil
}

// BenchmarkEventsPerSecond: events per second delivered end to end
// through the controller into a Trace's Status and ExternalResource
// outputs, while the benchmark fails b.N opens (trace-open with
// failed_only=true). Reference: the same workload traced by the bare
// runtime (eBPF stage, enricher, a counting sink), no controller, no
// API server. The ratio is delivered events per workload second through
// the controller over the bare runtime; lost events (ring buffer full)
// are reported too.
func BenchmarkEventsPerSecond(b *testing.B) {
	requireRoot(b)
	ns := privilegedNamespace(b)
	n := startNode(b, "bench-events", nodeOptions{})
	runningPackage(b, ns, "trace-open", "trace-open")
	g, err := gadget.ReadGadget(env.RepoRoot + "/charts/packages/trace-open")
	if err != nil {
		b.Fatal(err)
	}
	params := map[string]string{"failed_only": "true"}

	var refEvents int64
	attached := make(chan struct{})
	rt, err := gadget.New(ebpfstage.New(ebpfstage.Options{}), enricher.New(enricher.Options{}), countSink{&refEvents, attached})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	var refLost uint64
	go func() {
		res, err := rt.Run(ctx, g, gadget.RunOptions{Params: gadget.Params(params)})
		if res != nil {
			for _, st := range res.Stats {
				refLost += st.Lost
			}
		}
		runDone <- err
	}()
	select {
	case <-attached:
	case err := <-runDone:
		b.Fatalf("the reference run ended before it attached: %v", err)
	}
	refDur := openWorkload(b.N)
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	refRate := float64(refEvents) / refDur.Seconds()
	b.ReportMetric(refRate, "ref-events/s")
	b.ReportMetric(float64(refLost), "ref-lost")

	for _, mode := range []gadgetv1alpha1.OutputMode{gadgetv1alpha1.OutputStatus, gadgetv1alpha1.OutputExternalResource} {
		tr := newTrace(b, ns, "rate-"+strings.ToLower(string(mode)), n.name, "trace-open", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.OutputMode = mode
			tr.Spec.Parameters = params
		})
		annotate(b, key(tr), gadgetv1alpha1.OperationStart)
		waitTrace(b, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
		dur := openWorkload(b.N)
		time.Sleep(200 * time.Millisecond)
		annotate(b, key(tr), gadgetv1alpha1.OperationStop)
		got := waitTrace(b, key(tr), 60*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
		rate := float64(got.Status.EventCount) / dur.Seconds()
		b.ReportMetric(rate, string(mode)+"-events/s")
		b.ReportMetric(rate/refRate, string(mode)+"-ratio")
		b.ReportMetric(float64(got.Status.LostCount), string(mode)+"-lost")
	}
}
