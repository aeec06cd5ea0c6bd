package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/itchyny/gojq"
	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/gadgetpm/gadgetpm/kubeevents"
)

// BindingType names a kind of binding, as it appears in `hook --config`.
type BindingType string

// Binding types gadgetpm understands.
const (
	OnStartup       BindingType = "onStartup"
	Schedule        BindingType = "schedule"
	Kubernetes      BindingType = "kubernetes"
	BeforeHelm      BindingType = "beforeHelm"
	AfterHelm       BindingType = "afterHelm"
	AfterDeleteHelm BindingType = "afterDeleteHelm"
)

// ConfigVersion is the only `configVersion` gadgetpm accepts.
const ConfigVersion = "v1"

// ErrInvalidConfig is wrapped by every error ParseConfig returns for a
// config the hook printed (as opposed to failing to run the hook).
var ErrInvalidConfig = errors.New("invalid hook config")

// Config is a hook's parsed and defaulted `--config` output.
type Config struct {
	// OnStartup, BeforeHelm, AfterHelm and AfterDeleteHelm hold the ORDER of
	// those bindings; nil means the hook does not declare the binding.
	// Hooks of one package run for a binding in ascending ORDER, then path.
	OnStartup       *float64
	BeforeHelm      *float64
	AfterHelm       *float64
	AfterDeleteHelm *float64
	// Schedules are the schedule bindings, in the order declared.
	Schedules []ScheduleBinding
	// Kubernetes are the kubernetes bindings, in the order declared.
	Kubernetes []KubernetesBinding
	// Settings limit how often the hook runs.
	Settings Settings
}

// Settings is the `settings` section of a hook's config.
type Settings struct {
	// ExecutionMinInterval is the minimum time between two runs of the hook;
	// zero means no limit.
	ExecutionMinInterval time.Duration
	// ExecutionBurst is how many runs may happen back to back before
	// ExecutionMinInterval applies; defaults to 1.
	ExecutionBurst int
}

// Common holds the fields schedule and kubernetes bindings share.
type Common struct {
	// Name identifies the binding in binding contexts and snapshots. An
	// unnamed binding is named after its type, "schedule" or "kubernetes",
	// as shell-operator names it. Names need not be unique.
	Name string
	// Queue names the package queue the hook runs in for this binding;
	// empty means the package's main queue (`queue: main` is read as
	// empty, since "main" is shell-operator's name for that queue).
	Queue string
	// Group, when set, replaces this binding's contexts by one context of
	// type Group carrying the snapshots of every binding in the group.
	Group string
	// AllowFailure makes a failed run count as done (it is logged and
	// counted, not retried).
	AllowFailure bool
	// IncludeSnapshotsFrom names kubernetes bindings of the same hook whose
	// snapshots go into this binding's contexts.
	IncludeSnapshotsFrom []string
}

// ScheduleBinding runs the hook on a cron schedule.
type ScheduleBinding struct {
	Common
	// Crontab is the cron spec: 5 fields, 6 fields (with seconds first),
	// a descriptor such as @every 1m, optionally prefixed by CRON_TZ=.
	Crontab string
}

// KubernetesBinding runs the hook when watched objects change.
type KubernetesBinding struct {
	Common
	// Monitor is what kubeevents watches for this binding. Its ID is empty
	// until Hook assigns it; its Kind is as the hook wrote it until
	// ResolveKinds canonicalises it.
	Monitor kubeevents.Config
	// KindNotServed is set by ResolveKindsLater when the binding's API
	// group is not served (yet) and says so; Monitor then keeps the kind
	// as the hook wrote it and its monitor waits for the kind.
	KindNotServed string
	// WaitForSynchronization makes the package's start wait for this
	// binding's Synchronization run. Default true; `false` counts only for
	// a binding with a named queue, as in shell-operator: a Synchronization
	// in the main queue is always waited for.
	WaitForSynchronization bool
}

// rawConfig is the wire form of `hook --config` v1.
type rawConfig struct {
	ConfigVersion   string        `json:"configVersion"`
	OnStartup       *json.Number  `json:"onStartup"`
	BeforeHelm      *json.Number  `json:"beforeHelm"`
	AfterHelm       *json.Number  `json:"afterHelm"`
	AfterDeleteHelm *json.Number  `json:"afterDeleteHelm"`
	Schedule        []rawSchedule `json:"schedule"`
	Kubernetes      []rawKube     `json:"kubernetes"`
	Settings        *rawSettings  `json:"settings"`
}

type rawCommon struct {
	Name                 string   `json:"name"`
	Queue                string   `json:"queue"`
	Group                string   `json:"group"`
	AllowFailure         *bool    `json:"allowFailure"`
	IncludeSnapshotsFrom []string `json:"includeSnapshotsFrom"`
}

type rawSchedule struct {
	rawCommon
	Crontab string `json:"crontab"`
}

type rawKube struct {
	rawCommon
	APIVersion                   string                `json:"apiVersion"`
	Kind                         string                `json:"kind"`
	NameSelector                 *rawNameSelector      `json:"nameSelector"`
	LabelSelector                *metav1.LabelSelector `json:"labelSelector"`
	FieldSelector                *rawFieldSelector     `json:"fieldSelector"`
	Namespace                    *rawNamespace         `json:"namespace"`
	JqFilter                     string                `json:"jqFilter"`
	ExecuteHookOnEvent           []string              `json:"executeHookOnEvent"`
	WatchEvent                   []string              `json:"watchEvent"`
	ExecuteHookOnSynchronization *bool                 `json:"executeHookOnSynchronization"`
	WaitForSynchronization       *bool                 `json:"waitForSynchronization"`
	KeepFullObjectsInMemory      *bool                 `json:"keepFullObjectsInMemory"`
	ResynchronizationPeriod      string                `json:"resynchronizationPeriod"`
}

type rawNameSelector struct {
	MatchNames []string `json:"matchNames"`
}

type rawFieldSelector struct {
	MatchExpressions []rawFieldExpr `json:"matchExpressions"`
}

type rawFieldExpr struct {
	Field    string `json:"field"`
	Operator string `json:"operator"`
	Value    string `json:"value"`
}

type rawNamespace struct {
	NameSelector  *rawNameSelector      `json:"nameSelector"`
	LabelSelector *metav1.LabelSelector `json:"labelSelector"`
}

type rawSettings struct {
	ExecutionMinInterval string `json:"executionMinInterval"`
	ExecutionBurst       *int   `json:"executionBurst"`
}

// knownTopLevel are the top-level keys of a v1 config.
var knownTopLevel = map[string]bool{
	"configVersion": true, "onStartup": true, "schedule": true, "kubernetes": true,
	"beforeHelm": true, "afterHelm": true, "afterDeleteHelm": true, "settings": true,
}

// unsupportedBindings are bindings other shell-operator flavours know that
// gadget packages cannot use, with what to do instead.
var unsupportedBindings = map[string]string{
	"kubernetesValidating":               "gadgetpm serves no admission webhooks",
	"kubernetesMutating":                 "gadgetpm serves no admission webhooks",
	"kubernetesCustomResourceConversion": "gadgetpm serves no conversion webhooks",
	"beforeAll":                          "it is a global-hook binding; package hooks use beforeHelm",
	"afterAll":                           "it is a global-hook binding; package hooks use afterHelm",
}

// ConfigError is a problem with one field of a hook's config.
type ConfigError struct {
	// Hook is the hook's name (its path below hooks/).
	Hook string
	// Binding is "<type>" or "<type>[<index>] <name>"; empty for top-level
	// fields.
	Binding string
	// Field is the offending field's path within the binding.
	Field string
	// Msg says what was wrong and what was expected.
	Msg string
}

// Error implements error.
func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hook %s", e.Hook)
	if e.Binding != "" {
		fmt.Fprintf(&b, ": binding %s", e.Binding)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every ConfigError match ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// ParseConfig parses what `hook --config` printed (YAML or JSON) for the hook
// named hook, applies shell-operator's defaults and validates everything that
// needs no cluster: cron specs, jq filters, selectors, event names, snapshot
// references. Kinds are checked later by ResolveKinds. Every error is a
// *ConfigError naming the hook, the binding and the field.
func ParseConfig(hook string, data []byte) (*Config, error) {
	cerr := func(binding, field, format string, args ...any) error {
		return &ConfigError{Hook: hook, Binding: binding, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, cerr("", "", "--config printed nothing; expected a YAML or JSON object with configVersion: v1")
	}
	// YAML is a superset of JSON: decode into a generic tree, then re-encode
	// as JSON so one set of struct tags serves both.
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, cerr("", "", "--config output is neither YAML nor JSON: %v", err)
	}
	top, ok := tree.(map[string]any)
	if !ok {
		return nil, cerr("", "", "--config output is a %s; expected an object with configVersion: v1", describe(tree))
	}
	v, ok := top["configVersion"]
	if !ok {
		return nil, cerr("", "configVersion", "missing; expected \"v1\"")
	}
	if s, _ := v.(string); s != ConfigVersion {
		return nil, cerr("", "configVersion", "unsupported version %v; expected \"v1\"", v)
	}
	for k := range top {
		if why, ok := unsupportedBindings[k]; ok {
			return nil, cerr("", k, "binding not supported: %s", why)
		}
	}
	var unknown []string
	for k := range top {
		if !knownTopLevel[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, cerr("", strings.Join(unknown, ", "), "unknown binding; expected one of onStartup, schedule, kubernetes, beforeHelm, afterHelm, afterDeleteHelm, settings")
	}
	var raw rawConfig
	if err := decodeSection(top, "configVersion", &raw.ConfigVersion); err != nil {
		return nil, cerr("", "configVersion", "%v", err)
	}
	for _, o := range []struct {
		key string
		out **json.Number
	}{
		{"onStartup", &raw.OnStartup}, {"beforeHelm", &raw.BeforeHelm},
		{"afterHelm", &raw.AfterHelm}, {"afterDeleteHelm", &raw.AfterDeleteHelm},
	} {
		if err := decodeSection(top, o.key, o.out); err != nil {
			return nil, cerr(o.key, "", "%v; expected the ORDER number", err)
		}
	}
	if err := decodeSection(top, "settings", &raw.Settings); err != nil {
		return nil, cerr("settings", fieldOf(err), "%v", cleanJSONError(err))
	}
	var schedules, kubes []any
	if err := decodeSection(top, "schedule", &schedules); err != nil {
		return nil, cerr("schedule", "", "%v", cleanJSONError(err))
	}
	if err := decodeSection(top, "kubernetes", &kubes); err != nil {
		return nil, cerr("kubernetes", "", "%v", cleanJSONError(err))
	}
	for i, item := range schedules {
		var rs rawSchedule
		if err := decodeStrict(item, &rs); err != nil {
			return nil, cerr(fmt.Sprintf("schedule[%d]", i), fieldOf(err), "%v", cleanJSONError(err))
		}
		raw.Schedule = append(raw.Schedule, rs)
	}
	for i, item := range kubes {
		var rk rawKube
		if err := decodeStrict(item, &rk); err != nil {
			return nil, cerr(fmt.Sprintf("kubernetes[%d]", i), fieldOf(err), "%v", cleanJSONError(err))
		}
		raw.Kubernetes = append(raw.Kubernetes, rk)
	}

	cfg := &Config{Settings: Settings{ExecutionBurst: 1}}
	for _, o := range []struct {
		name string
		in   *json.Number
		out  **float64
	}{
		{string(OnStartup), raw.OnStartup, &cfg.OnStartup},
		{string(BeforeHelm), raw.BeforeHelm, &cfg.BeforeHelm},
		{string(AfterHelm), raw.AfterHelm, &cfg.AfterHelm},
		{string(AfterDeleteHelm), raw.AfterDeleteHelm, &cfg.AfterDeleteHelm},
	} {
		if o.in == nil {
			continue
		}
		f, err := o.in.Float64()
		if err != nil {
			return nil, cerr(o.name, "", "ORDER %q is not a number", o.in.String())
		}
		*o.out = &f
	}

	if s := raw.Settings; s != nil {
		if s.ExecutionMinInterval != "" {
			d, err := time.ParseDuration(s.ExecutionMinInterval)
			if err != nil || d < 0 {
				return nil, cerr("settings", "executionMinInterval", "%q is not a duration such as 3s or 1m", s.ExecutionMinInterval)
			}
			cfg.Settings.ExecutionMinInterval = d
		}
		if s.ExecutionBurst != nil {
			if *s.ExecutionBurst < 1 {
				return nil, cerr("settings", "executionBurst", "%d must be at least 1", *s.ExecutionBurst)
			}
			cfg.Settings.ExecutionBurst = *s.ExecutionBurst
		}
	}

	cronParser := cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	for i, rs := range raw.Schedule {
		b := ScheduleBinding{Common: common(rs.rawCommon, Schedule), Crontab: strings.TrimSpace(rs.Crontab)}
		where := fmt.Sprintf("schedule[%d] %q", i, b.Name)
		if b.Crontab == "" {
			return nil, cerr(where, "crontab", "missing; expected a cron spec such as \"*/5 * * * *\"")
		}
		if _, err := cronParser.Parse(b.Crontab); err != nil {
			return nil, cerr(where, "crontab", "%q is not a cron spec (5 or 6 fields, or a descriptor like @every 1m): %v", b.Crontab, err)
		}
		cfg.Schedules = append(cfg.Schedules, b)
	}

	// Names need not be unique, as in shell-operator: each binding has its
	// own monitor, and a snapshot asked for by a shared name is the last
	// such binding's.
	names := map[string]bool{}
	for i, rk := range raw.Kubernetes {
		b, err := kubeBinding(rk)
		where := fmt.Sprintf("kubernetes[%d] %q", i, b.Name)
		if err != nil {
			var fe *fieldErr
			if errors.As(err, &fe) {
				return nil, cerr(where, fe.field, "%s", fe.msg)
			}
			return nil, cerr(where, "", "%v", err)
		}
		names[b.Name] = true
		cfg.Kubernetes = append(cfg.Kubernetes, b)
	}

	// Snapshot references may only name kubernetes bindings of this hook;
	// the synchronization queue is not a binding's to choose.
	check := func(where string, c Common) error {
		if c.Queue == SyncQueue {
			return cerr(where, "queue", "%q is reserved for the Synchronization runs a package's start waits for; choose another name", c.Queue)
		}
		for _, n := range c.IncludeSnapshotsFrom {
			if _, ok := names[n]; !ok {
				return cerr(where, "includeSnapshotsFrom", "%q is not the name of a kubernetes binding of this hook (have: %s)", n, strings.Join(sortedKeys(names), ", "))
			}
		}
		return nil
	}
	for i, b := range cfg.Schedules {
		if err := check(fmt.Sprintf("schedule[%d] %q", i, b.Name), b.Common); err != nil {
			return nil, err
		}
	}
	for i, b := range cfg.Kubernetes {
		if err := check(fmt.Sprintf("kubernetes[%d] %q", i, b.Name), b.Common); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// MainQueue is shell-operator's name for the main queue; a binding with
// `queue: main` runs in the package's main queue.
const MainQueue = "main"

// SyncQueue is the custom queue name reserved for the Synchronization runs
// a package's start waits for (`<key>/synchronization`); no binding may
// name it, so that no hook run of another kind sits in front of them.
const SyncQueue = "synchronization"

func common(r rawCommon, t BindingType) Common {
	name := strings.TrimSpace(r.Name)
	if name == "" {
		name = string(t)
	}
	q := strings.TrimSpace(r.Queue)
	if q == MainQueue {
		q = ""
	}
	return Common{
		Name:                 name,
		Queue:                q,
		Group:                r.Group,
		AllowFailure:         r.AllowFailure != nil && *r.AllowFailure,
		IncludeSnapshotsFrom: r.IncludeSnapshotsFrom,
	}
}

type fieldErr struct{ field, msg string }

func (e *fieldErr) Error() string { return e.field + ": " + e.msg }

func ferr(field, format string, args ...any) error {
	return &fieldErr{field: field, msg: fmt.Sprintf(format, args...)}
}

// watchEventAliases maps every spelling shell-operator accepts to its name.
var watchEventAliases = map[string]kubeevents.WatchEvent{
	"added": kubeevents.WatchEventAdded, "add": kubeevents.WatchEventAdded,
	"modified": kubeevents.WatchEventModified, "update": kubeevents.WatchEventModified,
	"deleted": kubeevents.WatchEventDeleted, "delete": kubeevents.WatchEventDeleted,
}

func kubeBinding(r rawKube) (KubernetesBinding, error) {
	b := KubernetesBinding{Common: common(r.rawCommon, Kubernetes)}
	// Only a binding in a named queue may skip the wait (shell-operator's
	// config and its main-queue handling both say so).
	b.WaitForSynchronization = boolOr(r.WaitForSynchronization, true) || b.Queue == ""
	m := kubeevents.Config{
		APIVersion:                   strings.TrimSpace(r.APIVersion),
		Kind:                         strings.TrimSpace(r.Kind),
		JqFilter:                     strings.TrimSpace(r.JqFilter),
		ExecuteHookOnSynchronization: boolOr(r.ExecuteHookOnSynchronization, true),
		KeepFullObjectsInMemory:      boolOr(r.KeepFullObjectsInMemory, true),
		LabelSelector:                r.LabelSelector,
	}
	if m.Kind == "" {
		return b, ferr("kind", "missing; expected a kind such as Pod, pods or po")
	}
	if m.APIVersion != "" {
		parts := strings.Split(m.APIVersion, "/")
		if len(parts) > 2 || parts[0] == "" || parts[len(parts)-1] == "" {
			return b, ferr("apiVersion", "%q is not an apiVersion such as v1 or apps/v1", m.APIVersion)
		}
	}
	if r.NameSelector != nil {
		m.NameSelector = r.NameSelector.MatchNames
	}
	if r.LabelSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(r.LabelSelector); err != nil {
			return b, ferr("labelSelector", "%v", err)
		}
	}
	if fs := r.FieldSelector; fs != nil {
		sel, err := fieldSelector(fs.MatchExpressions)
		if err != nil {
			return b, err
		}
		m.FieldSelector = sel
	}
	if ns := r.Namespace; ns != nil && (ns.NameSelector != nil || ns.LabelSelector != nil) {
		m.Namespace = &kubeevents.NamespaceSelector{LabelSelector: ns.LabelSelector}
		if ns.NameSelector != nil {
			m.Namespace.MatchNames = ns.NameSelector.MatchNames
		}
		if ns.LabelSelector != nil {
			if _, err := metav1.LabelSelectorAsSelector(ns.LabelSelector); err != nil {
				return b, ferr("namespace.labelSelector", "%v", err)
			}
		}
	}
	if m.JqFilter != "" {
		q, err := gojq.Parse(m.JqFilter)
		if err == nil {
			_, err = gojq.Compile(q)
		}
		if err != nil {
			return b, ferr("jqFilter", "%q does not compile: %v", m.JqFilter, err)
		}
	}
	events, field := r.ExecuteHookOnEvent, "executeHookOnEvent"
	if events == nil && r.WatchEvent != nil {
		// watchEvent is the deprecated spelling of executeHookOnEvent.
		events, field = r.WatchEvent, "watchEvent"
	}
	if events != nil {
		m.ExecuteHookOnEvent = []kubeevents.WatchEvent{}
		for i, e := range events {
			we, ok := watchEventAliases[strings.ToLower(strings.TrimSpace(e))]
			if !ok {
				return b, ferr(fmt.Sprintf("%s[%d]", field, i), "%q is not an event; expected Added, Modified or Deleted", e)
			}
			m.ExecuteHookOnEvent = append(m.ExecuteHookOnEvent, we)
		}
	}
	if r.ResynchronizationPeriod != "" {
		d, err := time.ParseDuration(r.ResynchronizationPeriod)
		if err != nil || d <= 0 {
			return b, ferr("resynchronizationPeriod", "%q is not a positive duration such as 10m", r.ResynchronizationPeriod)
		}
		m.ResyncPeriod = d
	}
	m.Binding = b.Name
	b.Monitor = m
	return b, nil
}

// fieldSelector turns shell-operator's matchExpressions into a field
// selector string.
func fieldSelector(exprs []rawFieldExpr) (string, error) {
	var reqs []fields.Selector
	for i, e := range exprs {
		where := fmt.Sprintf("fieldSelector.matchExpressions[%d]", i)
		if e.Field == "" {
			return "", ferr(where+".field", "missing; expected a field such as metadata.name")
		}
		switch e.Operator {
		case "=", "==", "Equals":
			reqs = append(reqs, fields.OneTermEqualSelector(e.Field, e.Value))
		case "!=", "NotEquals":
			reqs = append(reqs, fields.OneTermNotEqualSelector(e.Field, e.Value))
		default:
			return "", ferr(where+".operator", "%q is not an operator; expected Equals, NotEquals, =, == or !=", e.Operator)
		}
	}
	return fields.AndSelectors(reqs...).String(), nil
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "list"
	case string:
		return "string"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// fieldOf extracts the JSON field a decode error is about.
func fieldOf(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// Embedded structs show up in the path; hooks never wrote them.
		return strings.TrimPrefix(te.Field, "rawCommon.")
	}
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		f, _ := strconv.Unquote(strings.TrimSpace(msg[i+len("unknown field "):]))
		return f
	}
	return ""
}

func cleanJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("is a %s; expected %s", te.Value, jsonTypeName(te.Type.Kind().String()))
	}
	if strings.Contains(err.Error(), "unknown field") {
		return "unknown field"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonTypeName(kind string) string {
	switch kind {
	case "slice":
		return "a list"
	case "struct", "map", "ptr":
		return "an object"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	default:
		return kind
	}
}

// decodeSection decodes top[key], when present and not null, into out.
func decodeSection(top map[string]any, key string, out any) error {
	v, ok := top[key]
	if !ok || v == nil {
		return nil
	}
	return decodeStrict(v, out)
}

// decodeStrict re-encodes a YAML/JSON tree as JSON and decodes it into out,
// refusing unknown fields.
func decodeStrict(v any, out any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}
