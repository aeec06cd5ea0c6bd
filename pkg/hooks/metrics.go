package hooks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric actions of shell-operator's METRICS_PATH format.
const (
	MetricAdd     = "add"     // counter: add value
	MetricSet     = "set"     // gauge: set value
	MetricObserve = "observe" // histogram: observe value
	MetricExpire  = "expire"  // drop every metric of a group
)

// MetricOp is one line of the file behind METRICS_PATH.
type MetricOp struct {
	// Name of the metric; required except for expire.
	Name string `json:"name"`
	// Action is add, set, observe or expire.
	Action string `json:"action"`
	// Value to add, set or observe.
	Value *float64 `json:"value"`
	// Buckets are a histogram's upper bounds; default Prometheus's.
	Buckets []float64 `json:"buckets,omitempty"`
	// Labels of the series; package and hook are added by gadgetpm and
	// win over a hook's own.
	Labels map[string]string `json:"labels,omitempty"`
	// Group: when a run writes any metric of a group, the group's metrics
	// from earlier runs of the hook are dropped first; expire drops them.
	Group string `json:"group,omitempty"`
	// Set and Add are the older spelling without action:
	// {"name": "x", "set": 1} means action set, value 1. ParseMetrics
	// rewrites them into Action and Value.
	Set *float64 `json:"set,omitempty"`
	Add *float64 `json:"add,omitempty"`
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// ParseMetrics reads METRICS_PATH content: one JSON object per line (blank
// lines are skipped). An error names the line and what was expected.
func ParseMetrics(data []byte) ([]MetricOp, error) {
	var ops []MetricOp
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var op MetricOp
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&op); err != nil {
			return nil, fmt.Errorf("metrics line %d is not a JSON metric object: %w", n, err)
		}
		if err := op.validate(); err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return ops, nil
}

func (op *MetricOp) validate() error {
	if op.Action == "" {
		switch {
		case op.Set != nil && op.Add != nil:
			return fmt.Errorf("metric %s: both set and add; write one", op.Name)
		case op.Set != nil:
			op.Action, op.Value, op.Set = MetricSet, op.Set, nil
		case op.Add != nil:
			op.Action, op.Value, op.Add = MetricAdd, op.Add, nil
		}
	} else if op.Set != nil || op.Add != nil {
		return fmt.Errorf("metric %s: set or add together with action; use action and value", op.Name)
	}
	switch op.Action {
	case MetricExpire:
		if op.Group == "" {
			return errors.New("expire needs a group")
		}
		return nil
	case MetricAdd, MetricSet, MetricObserve:
	case "":
		return errors.New("missing action; expected add, set, observe or expire")
	default:
		return fmt.Errorf("action %q is not add, set, observe or expire", op.Action)
	}
	if !metricNameRE.MatchString(op.Name) {
		return fmt.Errorf("name %q is not a Prometheus metric name", op.Name)
	}
	if op.Value == nil {
		return fmt.Errorf("metric %s: missing value", op.Name)
	}
	if math.IsNaN(*op.Value) || math.IsInf(*op.Value, 0) {
		return fmt.Errorf("metric %s: value must be finite", op.Name)
	}
	if op.Action == MetricAdd && *op.Value < 0 {
		return fmt.Errorf("metric %s: add of %v; a counter only goes up", op.Name, *op.Value)
	}
	for k := range op.Labels {
		if !labelNameRE.MatchString(k) {
			return fmt.Errorf("metric %s: label %q is not a Prometheus label name", op.Name, k)
		}
	}
	for i := 1; i < len(op.Buckets); i++ {
		if op.Buckets[i] <= op.Buckets[i-1] {
			return fmt.Errorf("metric %s: buckets must increase", op.Name)
		}
	}
	return nil
}

// Run outcomes, the outcome label of gadgetpm_hook_runs_total.
const (
	OutcomeSuccess        = "success"
	OutcomeFailure        = "failure"
	OutcomeAllowedFailure = "allowed_failure"
)

// DefaultMaxSeriesPerHook is MetricsOptions.MaxSeriesPerHook's default.
const DefaultMaxSeriesPerHook = 1000

// MetricsOptions configure NewMetrics; the zero value means the defaults.
type MetricsOptions struct {
	// MaxSeriesPerHook caps the series one hook of one package keeps
	// (every metric name and label set it wrote, histograms counting
	// once). A new series beyond it is dropped and counted in
	// gadgetpm_hook_metric_series_dropped_total; the run itself does not
	// fail. Default DefaultMaxSeriesPerHook; negative: no cap.
	MaxSeriesPerHook int
	// Logger gets one line when a hook first goes over the cap (again
	// after Forget). Default: discard.
	Logger logr.Logger
}

// Metrics exports hooks' own metrics and gadgetpm's run metrics on a
// Prometheus registry, every series labelled with package and hook. Safe for
// concurrent use.
type Metrics struct {
	opts     MetricsOptions
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dropped  *prometheus.CounterVec

	mu sync.Mutex
	// series holds hook metrics by seriesKey; guarded by mu.
	series map[seriesKey]*series
	// perHook counts the series in series of each package's hook; guarded
	// by mu.
	perHook map[hookKey]int
	// overCap holds the hooks that dropped a series since they were last
	// forgotten, so the log says it once; guarded by mu.
	overCap map[hookKey]bool
	// kinds remembers each metric name's type and label names so a hook
	// cannot make a family inconsistent; guarded by mu.
	kinds map[string]familyShape
}

type seriesKey struct {
	pkg, hook, group, name, labels string
}

type hookKey struct{ pkg, hook string }

type familyShape struct {
	action string
	labels string
}

type series struct {
	action      string
	labelNames  []string
	labelValues []string
	value       float64
	// histogram state
	bounds []float64
	counts []uint64
	count  uint64
}

// NewMetrics creates the metrics and registers them on reg (controller
// runtime's metrics.Registry in the operator, a fresh registry in tests).
// At most one opts is used; none means the defaults.
func NewMetrics(reg prometheus.Registerer, opts ...MetricsOptions) (*Metrics, error) {
	var o MetricsOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.MaxSeriesPerHook == 0 {
		o.MaxSeriesPerHook = DefaultMaxSeriesPerHook
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	m := &Metrics{
		opts: o,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gadgetpm_hook_metric_series_dropped_total",
			Help: "New hook metric series dropped because the hook already kept the most series allowed (--max-hook-metric-series).",
		}, []string{"package", "hook"}),
		perHook: map[hookKey]int{},
		overCap: map[hookKey]bool{},
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gadgetpm_hook_runs_total",
			Help: "Hook runs by package, hook, binding and outcome (success, failure, allowed_failure).",
		}, []string{"package", "hook", "binding", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gadgetpm_hook_run_duration_seconds",
			Help:    "Wall time of hook runs, from process start to exit.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"package", "hook"}),
		series: map[seriesKey]*series{},
		kinds:  map[string]familyShape{},
	}
	for _, c := range []prometheus.Collector{m.runs, m.duration, m.dropped, hookCollector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register hook metrics: %w", err)
		}
	}
	return m, nil
}

// RecordRun counts one finished run.
func (m *Metrics) RecordRun(pkg, hook, binding, outcome string, d time.Duration) {
	m.runs.WithLabelValues(pkg, hook, binding, outcome).Inc()
	m.duration.WithLabelValues(pkg, hook).Observe(d.Seconds())
}

// Apply applies one run's metric operations for a hook. It checks them all
// first, so a bad operation changes nothing. A new series beyond
// MaxSeriesPerHook is dropped (counted and logged), not an error.
func (m *Metrics) Apply(pkg, hook string, ops []MetricOp) error {
	dropped, first, err := m.apply(pkg, hook, ops)
	if dropped > 0 {
		m.dropped.WithLabelValues(pkg, hook).Add(float64(dropped))
	}
	if first {
		m.opts.Logger.Info("hook metric series dropped: the hook keeps the most series allowed; new label sets are not exported until its old series expire (metric groups) or --max-hook-metric-series is raised",
			"package", pkg, "hook", hook, "limit", m.opts.MaxSeriesPerHook, "flag", "--max-hook-metric-series", "dropped", dropped)
	}
	return err
}

// apply is Apply under the lock: it returns how many new series it
// dropped and whether this is the hook's first drop since Forget.
func (m *Metrics) apply(pkg, hook string, ops []MetricOp) (dropped int, first bool, _ error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hk := hookKey{pkg, hook}
	shapes := map[string]familyShape{}
	for i, op := range ops {
		if op.Action == MetricExpire {
			continue
		}
		names := labelNames(op.Labels)
		want := familyShape{action: op.Action, labels: strings.Join(names, ",")}
		have, ok := shapes[op.Name]
		if !ok {
			have, ok = m.kinds[op.Name]
		}
		if ok && have != want {
			return 0, false, fmt.Errorf("metric operation %d (%s %s): %s with labels {%s} clashes with earlier %s with labels {%s}", i, op.Action, op.Name, op.Action, want.labels, have.action, have.labels)
		}
		shapes[op.Name] = want
	}
	// Groups written in this run replace their previous content.
	groups := map[string]bool{}
	for _, op := range ops {
		if op.Group != "" {
			groups[op.Group] = true
		}
	}
	for k := range m.series {
		if k.pkg == pkg && k.hook == hook && groups[k.group] {
			delete(m.series, k)
			m.perHook[hk]--
		}
	}
	for name, s := range shapes {
		m.kinds[name] = s
	}
	for _, op := range ops {
		if op.Action == MetricExpire {
			continue
		}
		names := labelNames(op.Labels)
		values := make([]string, 0, len(names)+2)
		for _, n := range names {
			values = append(values, op.Labels[n])
		}
		key := seriesKey{pkg: pkg, hook: hook, group: op.Group, name: op.Name, labels: strings.Join(values, "\xff")}
		s := m.series[key]
		if s == nil {
			if limit := m.opts.MaxSeriesPerHook; limit > 0 && m.perHook[hk] >= limit {
				dropped++
				continue
			}
			m.perHook[hk]++
			s = &series{action: op.Action, labelNames: names, labelValues: values}
			if op.Action == MetricObserve {
				s.bounds = op.Buckets
				if len(s.bounds) == 0 {
					s.bounds = prometheus.DefBuckets
				}
				s.counts = make([]uint64, len(s.bounds))
			}
			m.series[key] = s
		}
		v := *op.Value
		switch op.Action {
		case MetricAdd:
			s.value += v
		case MetricSet:
			s.value = v
		case MetricObserve:
			s.value += v // sum
			s.count++
			if i := sort.SearchFloat64s(s.bounds, v); i < len(s.bounds) {
				s.counts[i]++
			}
		}
	}
	if m.perHook[hk] == 0 {
		delete(m.perHook, hk)
	}
	if dropped > 0 && !m.overCap[hk] {
		m.overCap[hk], first = true, true
	}
	return dropped, first, nil
}

// Forget drops every hook metric of a package, e.g. when it is removed.
func (m *Metrics) Forget(pkg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.series {
		if k.pkg == pkg {
			delete(m.series, k)
		}
	}
	for k := range m.perHook {
		if k.pkg == pkg {
			delete(m.perHook, k)
		}
	}
	for k := range m.overCap {
		if k.pkg == pkg {
			delete(m.overCap, k)
		}
	}
	m.dropped.DeletePartialMatch(prometheus.Labels{"package": pkg})
}

func labelNames(l map[string]string) []string {
	names := make([]string, 0, len(l))
	for k := range l {
		if k == "package" || k == "hook" {
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// hookCollector collects the hooks' own metrics. It is unchecked (describes
// nothing) because hooks choose names and labels at run time.
type hookCollector struct{ m *Metrics }

func (hookCollector) Describe(chan<- *prometheus.Desc) {}

func (c hookCollector) Collect(ch chan<- prometheus.Metric) {
	// Build the metrics under the lock, send them after: the registry's
	// consumer must not run while we hold it.
	var out []prometheus.Metric
	c.m.mu.Lock()
	for k, s := range c.m.series {
		names := append([]string{"package", "hook"}, s.labelNames...)
		values := append([]string{k.pkg, k.hook}, s.labelValues...)
		desc := prometheus.NewDesc(k.name, "Metric written by a gadget package hook.", names, nil)
		var (
			metric prometheus.Metric
			err    error
		)
		switch s.action {
		case MetricAdd:
			metric, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, s.value, values...)
		case MetricSet:
			metric, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, s.value, values...)
		case MetricObserve:
			buckets := make(map[float64]uint64, len(s.bounds))
			var cum uint64
			for i, b := range s.bounds {
				cum += s.counts[i]
				buckets[b] = cum
			}
			metric, err = prometheus.NewConstHistogram(desc, s.count, s.value, buckets, values...)
		}
		if err != nil {
			metric = prometheus.NewInvalidMetric(desc, err)
		}
		out = append(out, metric)
	}
	c.m.mu.Unlock()
	for _, metric := range out {
		ch <- metric
	}
}
