package trace_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver/streamservertest"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

// TestOutputModes runs one Trace per output mode at once on one node:
// their events go to a ConfigMap, a file and an HTTP stream. The three
// Traces have the same gadget and params, so they share one program; the
// params (target_uid) let through only the marker's execs, so that an
// event counted is one of them.
func TestOutputModes(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	hub := output.NewHub(output.HubOptions{})
	t.Cleanup(hub.Stop)
	// served as the node serves it: over TLS, to a reader allowed to
	// get the Trace
	base, streamClient := streamservertest.Serve(t, env.Config, hub.Handler("/traces/"), streamserver.Options{})
	reader := streamservertest.Reader(t, env.Config, ns, "stream-reader")
	n := startNode(t, uniqueNode(t), nodeOptions{hub: hub})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	const comm = "gpmoutputs"
	bin := marker(t, comm)
	user := markerUser(t, bin)
	runEveryAs(t, bin, user)
	params := map[string]string{"target_uid": strconv.FormatUint(uint64(user.Uid), 10)}

	t.Run("ExternalResource", func(t *testing.T) {
		t.Parallel()
		tr := newTrace(t, ns, "cm", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.OutputMode = gadgetv1alpha1.OutputExternalResource
			tr.Spec.Parameters = params
		})
		annotate(t, key(tr), gadgetv1alpha1.OperationStart)
		waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
		// the ConfigMap is written when the run ends; until then the
		// node's dump counts what the output took
		o := outputOf(t, n, key(tr), "an event", func(o trace.OutputInfo) bool { return o.Events > 0 })
		if o.Mode != gadgetv1alpha1.OutputExternalResource {
			t.Fatalf("the node's dump shows output %+v, want mode %s", o, gadgetv1alpha1.OutputExternalResource)
		}
		annotate(t, key(tr), gadgetv1alpha1.OperationStop)
		got := waitTrace(t, key(tr), 60*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
		if len(got.Status.Runs) != 1 || got.Status.Runs[0].Output == "" {
			t.Fatalf("runs: %+v", got.Status.Runs)
		}
		var cm corev1.ConfigMap
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: got.Status.Runs[0].Output}, &cm); err != nil {
			t.Fatalf("the run's ConfigMap %s: %v", got.Status.Runs[0].Output, err)
		}
		if !strings.Contains(cm.Data["events.json"], comm) {
			t.Fatalf("ConfigMap %s has no %s event: %.300s", cm.Name, comm, cm.Data["events.json"])
		}
		var sum output.Stats
		if err := json.Unmarshal([]byte(cm.Data["summary.json"]), &sum); err != nil || sum.Events < o.Events {
			t.Fatalf("ConfigMap %s summary %s (%v): fewer events than the %d the node's dump counted during the run", cm.Name, cm.Data["summary.json"], err, o.Events)
		}
		if len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != got.UID {
			t.Fatalf("ConfigMap owner references: %+v", cm.OwnerReferences)
		}
	})
	t.Run("File", func(t *testing.T) {
		t.Parallel()
		tr := newTrace(t, ns, "file", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.OutputMode = gadgetv1alpha1.OutputFile
			tr.Spec.Output = "execs"
			tr.Spec.Parameters = params
		})
		annotate(t, key(tr), gadgetv1alpha1.OperationStart)
		waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
		// a reader on the node sees every event as soon as it is written
		want := filepath.Join(n.dir, "traces", ns, "execs.jsonl")
		eventually.NoError(t, 30*time.Second, "a "+comm+" event in "+want, func() error {
			data, err := os.ReadFile(want)
			if err == nil && !strings.Contains(string(data), comm) {
				err = fmt.Errorf("%d bytes, none of them a %s event", len(data), comm)
			}
			return err
		})
		if o := outputOf(t, n, key(tr), "an event", func(o trace.OutputInfo) bool { return o.Events > 0 }); o.Mode != gadgetv1alpha1.OutputFile {
			t.Fatalf("the node's dump shows output %+v, want mode %s", o, gadgetv1alpha1.OutputFile)
		}
		annotate(t, key(tr), gadgetv1alpha1.OperationStop)
		got := waitTrace(t, key(tr), 60*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
		if len(got.Status.Runs) != 1 || got.Status.Runs[0].Output != want {
			t.Fatalf("runs: %+v, want output %s", got.Status.Runs, want)
		}
		data, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var ev map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || !strings.Contains(string(data), comm) {
			t.Fatalf("file %s: %v; %.300s", want, err, data)
		}
	})
	t.Run("Stream", func(t *testing.T) {
		t.Parallel()
		tr := newTrace(t, ns, "stream", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
			tr.Spec.OutputMode = gadgetv1alpha1.OutputStream
			tr.Spec.Parameters = params
		})
		annotate(t, key(tr), gadgetv1alpha1.OperationStart)
		waitTrace(t, key(tr), 60*time.Second, "Started", stateIs(gadgetv1alpha1.TraceStarted))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := streamservertest.Get(ctx, streamClient, base+"/traces/"+ns+"/stream", reader)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET stream: %s", resp.Status)
		}
		sc := bufio.NewScanner(resp.Body)
		found := false
		for !found && sc.Scan() {
			found = strings.Contains(sc.Text(), comm)
		}
		if !found {
			t.Fatalf("the stream ended without a %s event: %v", comm, sc.Err())
		}
		annotate(t, key(tr), gadgetv1alpha1.OperationStop)
		waitTrace(t, key(tr), 60*time.Second, "Stopped", stateIs(gadgetv1alpha1.TraceStopped))
		// the stream ends with the run
		for sc.Scan() {
		}
	})
}

// TestSchedule: @every 2s with a 2s duration (ticks while a run goes are
// skipped) fills status.runs, bounded
// by spec.historyLimit; every kept run is finished and has events. Each
// tick loads the program anew, which on a loaded machine takes a good part
// of a second, so a run gets 2s to see the marker execs.
func TestSchedule(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := privilegedNamespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	runEvery(t, marker(t, "gpmschedule"))
	tr := newTrace(t, ns, "periodic", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Schedule = "@every 2s"
		tr.Spec.Duration = &metav1.Duration{Duration: 2 * time.Second}
		tr.Spec.HistoryLimit = 2
	})
	got := waitTrace(t, key(tr), 90*time.Second, "three finished runs", func(tr *gadgetv1alpha1.Trace) bool {
		// the history is bounded: once two runs finished, the third one
		// replaced the first
		return len(tr.Status.Runs) == 2 && tr.Status.Runs[0].EndTime != nil && tr.Status.Runs[1].EndTime != nil &&
			tr.Status.LastRunTime != nil && tr.Status.LastRunTime.After(tr.CreationTimestamp.Add(8*time.Second))
	})
	for i, r := range got.Status.Runs {
		if r.Error != "" || r.Events == 0 {
			t.Errorf("run %d: %+v", i, r)
		}
		// status times have second precision
		if d := r.EndTime.Sub(r.StartTime.Time); d < time.Second || d > 8*time.Second {
			t.Errorf("run %d lasted %s, spec.duration is 2s", i, d)
		}
	}
	// suspend: no new run starts
	var cur gadgetv1alpha1.Trace
	if err := env.Client.Get(context.Background(), key(tr), &cur); err != nil {
		t.Fatal(err)
	}
	before := cur.DeepCopy()
	cur.Spec.Suspend = true
	if err := env.Client.Patch(context.Background(), &cur, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	// A second Trace on the same schedule is the clock: the node's own
	// ticks, not a guess at how long they take on a loaded machine, say
	// when the suspended Trace would have run. Its duration is shorter,
	// so that none of its ticks is skipped.
	clock := newTrace(t, ns, "clock", n.name, "trace-exec", func(tr *gadgetv1alpha1.Trace) {
		tr.Spec.Schedule = "@every 2s"
		tr.Spec.Duration = &metav1.Duration{Duration: 500 * time.Millisecond}
	})
	// ticks waits until the clock started count runs after the call.
	ticks := func(what string, count int) {
		t.Helper()
		var prev *metav1.Time
		polled, started := false, 0
		waitTrace(t, key(clock), 60*time.Second, what, func(tr *gadgetv1alpha1.Trace) bool {
			lr := tr.Status.LastRunTime
			if polled && lr != nil && (prev == nil || !lr.Equal(prev)) {
				started++
			}
			polled, prev = true, lr
			return started >= count
		})
	}
	// A tick of the suspended Trace that read its spec before the patch
	// may still start a run: two ticks of the clock later (the clock was
	// created after the patch), that run has started and is recorded.
	ticks("two runs of the clock", 2)
	got = waitTrace(t, key(tr), 10*time.Second, "suspended", func(tr *gadgetv1alpha1.Trace) bool {
		return len(tr.Status.Runs) > 0 && tr.Status.Runs[len(tr.Status.Runs)-1].EndTime != nil
	})
	last := got.Status.LastRunTime
	// two full periods of the same schedule: the suspended Trace would
	// have run
	ticks("three more runs of the clock", 3)
	got = waitTrace(t, key(tr), 10*time.Second, "read", func(*gadgetv1alpha1.Trace) bool { return true })
	if !got.Status.LastRunTime.Equal(last) {
		t.Fatalf("a run started while suspended: last run %s, before %s", got.Status.LastRunTime, last)
	}
}

// TestAnnotationRemovedAfterStatus watches the Trace: no version lacks the
// annotation while its status still lacks the outcome.
func TestAnnotationRemovedAfterStatus(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	ns := env.Namespace(t)
	n := startNode(t, uniqueNode(t), nodeOptions{})
	runningPackage(t, ns, "trace-exec", "trace-exec")
	tr := newTrace(t, ns, "order", n.name, "trace-exec")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var list gadgetv1alpha1.TraceList
	w, err := envWatch(ctx, ns, &list)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, step := range []struct {
		op   string
		want gadgetv1alpha1.TraceState
	}{{gadgetv1alpha1.OperationStart, gadgetv1alpha1.TraceStarted}, {gadgetv1alpha1.OperationStop, gadgetv1alpha1.TraceStopped}} {
		annotate(t, key(tr), step.op)
		seenAnnotated := false
		for done := false; !done; {
			select {
			case ev := <-w.ResultChan():
				got, ok := ev.Object.(*gadgetv1alpha1.Trace)
				if !ok || got.Name != tr.Name || ev.Type != watch.Modified {
					continue
				}
				op := got.Annotations[gadgetv1alpha1.OperationAnnotation]
				if op == step.op {
					seenAnnotated = true
					continue
				}
				if !seenAnnotated {
					continue
				}
				if got.Status.State != step.want {
					t.Fatalf("%s: the annotation was removed while status.state is %q (want %s)", step.op, got.Status.State, step.want)
				}
				done = true
			case <-ctx.Done():
				t.Fatalf("%s: no version without the annotation", step.op)
			}
		}
	}
}

func envWatch(ctx context.Context, ns string, list client.ObjectList) (watch.Interface, error) {
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		return nil, err
	}
	return wc.Watch(ctx, list, client.InNamespace(ns))
}
