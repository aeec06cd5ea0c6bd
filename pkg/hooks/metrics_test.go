package hooks

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestParseMetricsErrors(t *testing.T) {
	tests := map[string]string{
		"not json":        `{"name":"a","action":"set","value":1}` + "\nvalue=3",
		"unknown action":  `{"name":"a","action":"inc","value":1}`,
		"missing action":  `{"name":"a","value":1}`,
		"bad name":        `{"name":"a-b","action":"set","value":1}`,
		"missing value":   `{"name":"a","action":"set"}`,
		"negative add":    `{"name":"a","action":"add","value":-1}`,
		"bad label":       `{"name":"a","action":"set","value":1,"labels":{"1x":"y"}}`,
		"expire no group": `{"action":"expire"}`,
		"bad buckets":     `{"name":"a","action":"observe","value":1,"buckets":[2,1]}`,
		"unknown field":   `{"name":"a","action":"set","value":1,"help":"x"}`,
		"label not text":  `{"name":"a","action":"set","value":1,"labels":{"x":1}}`,
		"set and add":     `{"name":"a","set":1,"add":1}`,
		"old and new":     `{"name":"a","action":"add","value":1,"set":1}`,
	}
	for name, in := range tests {
		if _, err := ParseMetrics([]byte(in)); err == nil || !strings.Contains(err.Error(), "metrics line") {
			t.Errorf("%s: error %v should name the line", name, err)
		}
	}
	_, err := ParseMetrics([]byte("{\"name\":\"a\",\"action\":\"set\",\"value\":1}\n\nnope"))
	if err == nil || !strings.Contains(err.Error(), "metrics line 3") {
		t.Errorf("line number: %v", err)
	}
}

func TestMetricsExport(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	apply := func(hook, lines string) {
		t.Helper()
		ops, err := ParseMetrics([]byte(lines))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Apply("ns.pkg", hook, ops); err != nil {
			t.Fatal(err)
		}
	}
	apply("h1", `{"name":"events_total","action":"add","value":2,"labels":{"kind":"a"}}
{"name":"events_total","action":"add","value":3,"labels":{"kind":"a"}}
{"name":"temperature","action":"set","value":20,"labels":{"hook":"spoofed"}}
{"name":"temperature","action":"set","value":21}
{"name":"latency_seconds","action":"observe","value":0.3,"buckets":[0.1,0.5,1]}
{"name":"latency_seconds","action":"observe","value":0.7,"buckets":[0.1,0.5,1]}
{"name":"pods","action":"set","value":1,"group":"inventory","labels":{"pod":"a"}}
{"name":"pods","action":"set","value":1,"group":"inventory","labels":{"pod":"b"}}`)
	apply("h2", `{"name":"events_total","action":"add","value":1,"labels":{"kind":"a"}}`)
	// A second run of h1 rewrites the inventory group: pod a is gone.
	apply("h1", `{"name":"pods","action":"set","value":1,"group":"inventory","labels":{"pod":"b"}}
{"name":"events_total","action":"add","value":1,"labels":{"kind":"a"}}`)

	want := `
# HELP events_total Metric written by a gadget package hook.
# TYPE events_total counter
events_total{hook="h1",kind="a",package="ns.pkg"} 6
events_total{hook="h2",kind="a",package="ns.pkg"} 1
# HELP latency_seconds Metric written by a gadget package hook.
# TYPE latency_seconds histogram
latency_seconds_bucket{hook="h1",package="ns.pkg",le="0.1"} 0
latency_seconds_bucket{hook="h1",package="ns.pkg",le="0.5"} 1
latency_seconds_bucket{hook="h1",package="ns.pkg",le="1"} 2
latency_seconds_bucket{hook="h1",package="ns.pkg",le="+Inf"} 2
latency_seconds_sum{hook="h1",package="ns.pkg"} 1
latency_seconds_count{hook="h1",package="ns.pkg"} 2
# HELP pods Metric written by a gadget package hook.
# TYPE pods gauge
pods{hook="h1",package="ns.pkg",pod="b"} 1
# HELP temperature Metric written by a gadget package hook.
# TYPE temperature gauge
temperature{hook="h1",package="ns.pkg"} 21
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "events_total", "latency_seconds", "pods", "temperature"); err != nil {
		t.Error(err)
	}

	// expire drops the group.
	apply("h1", `{"action":"expire","group":"inventory"}`)
	if n, err := testutil.GatherAndCount(reg, "pods"); err != nil || n != 0 {
		t.Errorf("pods after expire: %d series, %v", n, err)
	}

	// A family cannot change type or labels; nothing of the bad run applies.
	ops, _ := ParseMetrics([]byte(`{"name":"fresh","action":"set","value":1}
{"name":"events_total","action":"set","value":1,"labels":{"kind":"a"}}`))
	if err := m.Apply("ns.pkg", "h1", ops); err == nil || !strings.Contains(err.Error(), "events_total") {
		t.Errorf("type clash: %v", err)
	}
	ops, _ = ParseMetrics([]byte(`{"name":"temperature","action":"set","value":1,"labels":{"room":"x"}}`))
	if err := m.Apply("ns.pkg", "h1", ops); err == nil || !strings.Contains(err.Error(), "labels {room}") {
		t.Errorf("label clash: %v", err)
	}
	if n, _ := testutil.GatherAndCount(reg, "fresh"); n != 0 {
		t.Errorf("a rejected run exported %d series", n)
	}

	m.RecordRun("ns.pkg", "h1", "onStartup", OutcomeAllowedFailure, 0)
	if got := testutil.ToFloat64(m.runs.WithLabelValues("ns.pkg", "h1", "onStartup", OutcomeAllowedFailure)); got != 1 {
		t.Errorf("allowed failures counted %v", got)
	}
	m.Forget("ns.pkg")
	if n, _ := testutil.GatherAndCount(reg, "events_total"); n != 0 {
		t.Errorf("Forget left %d series", n)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("gather: %v", err)
	}
}

func TestParseMetricsOlderSpelling(t *testing.T) {
	ops, err := ParseMetrics([]byte(`{"name":"a","set":3}
{"name":"b","add":2,"labels":{"x":"y"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ops[0].Action != MetricSet || *ops[0].Value != 3 || ops[1].Action != MetricAdd || *ops[1].Value != 2 {
		t.Errorf("ops %+v %+v", ops[0], ops[1])
	}
}

// A hook that writes a label set per object must not grow the operator's
// memory and /metrics without bound: beyond the cap new series are
// dropped, counted and logged once, and the run does not fail.
func TestMetricsSeriesCapPerHook(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logged []string
	log := funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{})
	m, err := NewMetrics(reg, MetricsOptions{MaxSeriesPerHook: 10, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	lines := func(group string, from, to int) []MetricOp {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, `{"name":"objects","action":"set","value":1,"group":%q,"labels":{"name":"o%d"}}`+"\n", group, i)
		}
		ops, err := ParseMetrics([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		return ops
	}
	series := func() int {
		t.Helper()
		n, err := testutil.GatherAndCount(reg, "objects")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Two runs over the cap: the hook keeps 10 series; 25 are dropped.
	for _, r := range []struct{ from, to int }{{0, 15}, {15, 35}} {
		if err := m.Apply("ns.pkg", "h1", lines("", r.from, r.to)); err != nil {
			t.Fatalf("a run over the series cap must not fail: %v", err)
		}
	}
	if n := series(); n != 10 {
		t.Errorf("series kept = %d, want the cap 10", n)
	}
	if got := testutil.ToFloat64(m.dropped.WithLabelValues("ns.pkg", "h1")); got != 25 {
		t.Errorf("gadgetpm_hook_metric_series_dropped_total = %v, want 25", got)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "--max-hook-metric-series") || !strings.Contains(logged[0], `"hook"="h1"`) {
		t.Errorf("want one log line naming the hook and the flag, got %q", logged)
	}
	// The cap is per hook: another hook still exports its series.
	if err := m.Apply("ns.pkg", "h2", lines("", 0, 3)); err != nil {
		t.Fatal(err)
	}
	if n := series(); n != 13 {
		t.Errorf("series after h2 = %d, want 13", n)
	}
	// A group rewrite frees room: after Forget the hook starts afresh.
	m.Forget("ns.pkg")
	if err := m.Apply("ns.pkg", "h1", lines("inv", 0, 10)); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply("ns.pkg", "h1", lines("inv", 100, 110)); err != nil {
		t.Fatal(err)
	}
	if n := series(); n != 10 {
		t.Errorf("series after a group rewrite = %d, want 10 (the group's old series make room)", n)
	}
	if got := testutil.CollectAndCount(m.dropped); got != 0 {
		t.Errorf("dropped counters after Forget and in-cap runs = %d series, want 0", got)
	}
}
