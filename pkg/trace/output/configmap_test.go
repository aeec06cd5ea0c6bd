package output

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newTrace creates a Trace named name in a fresh namespace.
func newTrace(t *testing.T, name string) *gadgetv1alpha1.Trace {
	t.Helper()
	tr := &gadgetv1alpha1.Trace{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.Namespace(t), Name: name},
		Spec: gadgetv1alpha1.TraceSpec{
			Node:       "node-1",
			Gadget:     "trace-exec",
			OutputMode: gadgetv1alpha1.OutputExternalResource,
		},
	}
	if err := env.Client.Create(testContext(t), tr); err != nil {
		t.Fatalf("create trace: %v", err)
	}
	return tr
}

func newConfigMapSink(t *testing.T, tr *gadgetv1alpha1.Trace, runID string, limit int) *ConfigMap {
	t.Helper()
	s, err := NewConfigMap(ConfigMapOptions{Client: env.Client, Scheme: env.Scheme, Trace: tr, RunID: runID, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func getConfigMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	var cm corev1.ConfigMap
	if err := env.Client.Get(testContext(t), client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
		t.Fatalf("get configmap %s/%s: %v", ns, name, err)
	}
	return &cm
}

type summary struct{ Events, Dropped int64 }

func readSummary(t *testing.T, cm *corev1.ConfigMap) summary {
	t.Helper()
	var s summary
	if err := json.Unmarshal([]byte(cm.Data[KeySummary]), &s); err != nil {
		t.Fatalf("%s: %v: %q", KeySummary, err, cm.Data[KeySummary])
	}
	return s
}

func TestConfigMapCreatedOnClose(t *testing.T) {
	ctx := testContext(t)
	tr := newTrace(t, "mytrace")
	s := newConfigMapSink(t, tr, "20261206t072800z", 0)
	var want []string
	buf := make([]byte, 0, 64)
	for i := range 10 {
		buf = append(buf[:0], event(i, 60)...)
		want = append(want, string(buf))
		if err := s.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	ref, err := s.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "mytrace-20261206t072800z" {
		t.Fatalf("Close() = %q, want mytrace-20261206t072800z", ref)
	}
	if ref2, err2 := s.Close(ctx); ref2 != ref || err2 != nil {
		t.Fatalf("second Close() = %q, %v; want %q, nil", ref2, err2, ref)
	}
	if err := s.Write(buf); err != ErrClosed {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}

	cm := getConfigMap(t, tr.Namespace, ref)
	if !metav1.IsControlledBy(cm, tr) {
		t.Fatalf("configmap owners %+v, want controller %s", cm.OwnerReferences, tr.UID)
	}
	if got := cm.Labels; got[LabelTrace] != "mytrace" || got[LabelRun] != "20261206t072800z" {
		t.Fatalf("labels %v", got)
	}
	if _, ok := cm.Annotations[AnnotationTruncated]; ok {
		t.Fatalf("annotation %s on a run that dropped nothing", AnnotationTruncated)
	}
	if got := cm.Data[KeyEvents]; got != strings.Join(want, "\n")+"\n" {
		t.Fatalf("%s = %q", KeyEvents, got)
	}
	if got := readSummary(t, cm); got != (summary{Events: 10}) {
		t.Fatalf("summary %+v, want 10 events", got)
	}
	// The selector documented for users finds it.
	var list corev1.ConfigMapList
	if err := env.Client.List(ctx, &list, client.InNamespace(tr.Namespace), client.MatchingLabels{LabelTrace: tr.Name}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != ref {
		t.Fatalf("label selector found %d configmaps", len(list.Items))
	}
}

func TestConfigMapFloodStaysUnderLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		want  int
	}{
		{"default limit", 0, DefaultConfigMapLimit},
		{"largest limit", MaxConfigMapLimit, MaxConfigMapLimit},
		{"small limit", 10 << 10, 10 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			tr := newTrace(t, "flood")
			s := newConfigMapSink(t, tr, "run-1", tc.limit)
			const n = 6000
			for i := range n {
				if err := s.Write(event(i, 100+i%400)); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			ref, err := s.Close(ctx)
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			cm := getConfigMap(t, tr.Namespace, ref)
			events := cm.Data[KeyEvents]
			if len(events) > tc.want {
				t.Fatalf("%s has %d bytes, limit %d", KeyEvents, len(events), tc.want)
			}
			lines := strings.Split(strings.TrimSuffix(events, "\n"), "\n")
			if last := lines[len(lines)-1]; last != string(event(n-1, 100+(n-1)%400)) {
				t.Fatalf("newest event missing; last line %q", last)
			}
			for i, l := range lines {
				if !json.Valid([]byte(l)) {
					t.Fatalf("line %d is not JSON: %q", i, l)
				}
			}
			if cm.Annotations[AnnotationTruncated] != "true" {
				t.Fatalf("annotations %v, want %s=true", cm.Annotations, AnnotationTruncated)
			}
			want := summary{Events: n, Dropped: int64(n - len(lines))}
			if got := readSummary(t, cm); got != want {
				t.Fatalf("summary %+v, want %+v", got, want)
			}
			if st != (Stats{Events: want.Events, Dropped: want.Dropped}) {
				t.Fatalf("Stats() = %+v, want %+v", st, want)
			}
			if after := s.Stats(); after != st {
				t.Fatalf("Stats() after Close = %+v, want %+v as before", after, st)
			}
		})
	}
}

func TestConfigMapBadOptions(t *testing.T) {
	tr := &gadgetv1alpha1.Trace{ObjectMeta: metav1.ObjectMeta{Namespace: "gadget", Name: "tr", UID: "u1"}}
	good := ConfigMapOptions{Client: env.Client, Scheme: env.Scheme, Trace: tr, RunID: "run-1"}
	for _, tc := range []struct {
		name   string
		change func(*ConfigMapOptions)
		want   string
	}{
		{"no client", func(o *ConfigMapOptions) { o.Client = nil }, "no client"},
		{"no scheme", func(o *ConfigMapOptions) { o.Scheme = nil }, "no scheme"},
		{"no trace", func(o *ConfigMapOptions) { o.Trace = nil }, "no trace"},
		{"no uid", func(o *ConfigMapOptions) {
			o.Trace = &gadgetv1alpha1.Trace{ObjectMeta: metav1.ObjectMeta{Namespace: "gadget", Name: "tr"}}
		}, "trace gadget/tr: namespace, name and uid are required"},
		{"empty run id", func(o *ConfigMapOptions) { o.RunID = "" }, `run id ""`},
		{"upper-case run id", func(o *ConfigMapOptions) { o.RunID = "2026T07" }, `run id "2026T07"`},
		{"run id with slash", func(o *ConfigMapOptions) { o.RunID = "a/b" }, `run id "a/b"`},
		{"long run id", func(o *ConfigMapOptions) { o.RunID = strings.Repeat("a", 64) }, "run id"},
		{"limit too large", func(o *ConfigMapOptions) { o.Limit = MaxConfigMapLimit + 1 }, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := good
			tc.change(&opts)
			if _, err := NewConfigMap(opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewConfigMap: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewConfigMap(good); err != nil {
		t.Fatalf("good options rejected: %v", err)
	}
}

func TestConfigMapLongTraceName(t *testing.T) {
	ctx := testContext(t)
	name := strings.Repeat("a", 240) + "." + strings.Repeat("b", 12)
	tr := newTrace(t, name)
	s := newConfigMapSink(t, tr, "20261206t072800z", 0)
	if err := s.Write([]byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	ref, err := s.Close(ctx)
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(ref) > 253 || !strings.HasSuffix(ref, "-20261206t072800z") {
		t.Fatalf("name %q (%d characters)", ref, len(ref))
	}
	cm := getConfigMap(t, tr.Namespace, ref)
	if v := cm.Labels[LabelTrace]; v != TraceLabelValue(name) || len(v) > 63 {
		t.Fatalf("label %s=%q", LabelTrace, v)
	}
	// Another long name with the same prefix gets other names.
	other := strings.Repeat("a", 240) + "." + strings.Repeat("c", 12)
	if TraceLabelValue(other) == TraceLabelValue(name) || ConfigMapName(other, "r") == ConfigMapName(name, "r") {
		t.Fatalf("two long trace names share a label value or configmap name")
	}
	if err := PruneConfigMaps(ctx, env.Client, tr, 0); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); err == nil {
		t.Fatalf("PruneConfigMaps(keep 0) left %s", ref)
	}
}

func TestConfigMapSameRunReplaces(t *testing.T) {
	ctx := testContext(t)
	tr := newTrace(t, "again")
	for i, ev := range []string{`{"try":1}`, `{"try":2}`} {
		s := newConfigMapSink(t, tr, "run-7", 0)
		if err := s.Write([]byte(ev)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Close(ctx); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	if got := getConfigMap(t, tr.Namespace, "again-run-7").Data[KeyEvents]; got != "{\"try\":2}\n" {
		t.Fatalf("events %q, want the second attempt's", got)
	}

	// A ConfigMap of that name that is not the Trace's is left alone.
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: tr.Namespace, Name: "again-run-8"}, Data: map[string]string{"k": "v"}}
	if err := env.Client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	s := newConfigMapSink(t, tr, "run-8", 0)
	_, err := s.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "again-run-8") || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("Close over a foreign configmap: %v", err)
	}
	if got := getConfigMap(t, tr.Namespace, "again-run-8").Data["k"]; got != "v" {
		t.Fatalf("foreign configmap changed")
	}
}

func TestPruneConfigMaps(t *testing.T) {
	ctx := testContext(t)
	tr := newTrace(t, "pruned")
	const runs, keep = 7, 3
	for i := range runs {
		s := newConfigMapSink(t, tr, fmt.Sprintf("run-%02d", i), 0)
		if err := s.Write(event(i, 50)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Same label, not controlled by the Trace: never pruned.
	stray := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Namespace: tr.Namespace, Name: "stray", Labels: map[string]string{LabelTrace: tr.Name},
	}}
	if err := env.Client.Create(ctx, stray); err != nil {
		t.Fatal(err)
	}
	// Another Trace's run ConfigMap in the same namespace.
	tr2 := &gadgetv1alpha1.Trace{ObjectMeta: metav1.ObjectMeta{Namespace: tr.Namespace, Name: "other"}, Spec: tr.Spec}
	if err := env.Client.Create(ctx, tr2); err != nil {
		t.Fatal(err)
	}
	s := newConfigMapSink(t, tr2, "run-00", 0)
	if _, err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	if err := PruneConfigMaps(ctx, env.Client, tr, keep); err != nil {
		t.Fatal(err)
	}
	if err := PruneConfigMaps(ctx, env.Client, tr, keep); err != nil {
		t.Fatalf("second prune: %v", err)
	}
	var list corev1.ConfigMapList
	if err := env.Client.List(ctx, &list, client.InNamespace(tr.Namespace)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range list.Items {
		if cm.Name != "kube-root-ca.crt" {
			names = append(names, cm.Name)
		}
	}
	sort.Strings(names)
	want := []string{"other-run-00", "pruned-run-04", "pruned-run-05", "pruned-run-06", "stray"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("after prune: %v, want %v", names, want)
	}
	if err := PruneConfigMaps(ctx, env.Client, tr, -1); err == nil || !strings.Contains(err.Error(), "keep -1") {
		t.Fatalf("negative keep: %v", err)
	}
}
