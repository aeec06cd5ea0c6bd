package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode"

	jsonpatch "github.com/evanphx/json-patch/v5"
	helmchartutil "helm.sh/helm/v3/pkg/chartutil"
)

// GlobalValuesKey is the top-level key of values shared by every package.
const GlobalValuesKey = "global"

// ValuesKey is the key of a package's own values in the values layout: its
// name in lower camel case ("net-trace" → "netTrace", "dns_top" → "dnsTop").
func ValuesKey(packageName string) string {
	var b strings.Builder
	upper := false
	for _, r := range packageName {
		switch {
		case r == '-' || r == '_' || r == '.':
			upper = b.Len() > 0
		case upper:
			b.WriteRune(unicode.ToUpper(r))
			upper = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Values are values in addon-operator's layout:
// {"global": {...}, "<valuesKey>": {...}}.
type Values map[string]any

// JSON encodes the values; nil encodes as {}.
func (v Values) JSON() ([]byte, error) {
	if v == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string]any(v))
}

// ParseJSONPatch reads the operations of a values JSON patch file: a JSON
// array of operations, or a stream of operations and arrays (one per line,
// as hooks append them). Empty input is an empty patch.
func ParseJSONPatch(data []byte) (jsonpatch.Patch, error) {
	var ops jsonpatch.Patch
	dec := json.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return ops, nil
		} else if err != nil {
			return nil, fmt.Errorf("item %d is not JSON: %w", i, err)
		}
		raw = bytes.TrimSpace(raw)
		switch {
		case len(raw) > 0 && raw[0] == '[':
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			for j, op := range list {
				o, err := patchOp(op)
				if err != nil {
					return nil, fmt.Errorf("item %d, operation %d: %w", i, j, err)
				}
				ops = append(ops, o)
			}
		default:
			o, err := patchOp(raw)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			ops = append(ops, o)
		}
	}
}

var patchOps = map[string]bool{"add": true, "remove": true, "replace": true, "move": true, "copy": true, "test": true}

func patchOp(raw json.RawMessage) (jsonpatch.Operation, error) {
	var op jsonpatch.Operation
	if err := json.Unmarshal(raw, &op); err != nil {
		return nil, fmt.Errorf("not a JSON patch operation object: %w", err)
	}
	kind := op.Kind()
	if !patchOps[kind] {
		return nil, fmt.Errorf("op %q is not one of add, remove, replace, move, copy, test", kind)
	}
	if _, err := op.Path(); err != nil {
		return nil, fmt.Errorf("op %s: missing path", kind)
	}
	return op, nil
}

// SettingsWriter persists a package's config values (its settings).
// GadgetPackageSettings implements it for a GadgetPackage.
type SettingsWriter interface {
	WriteSettings(ctx context.Context, settings map[string]any) error
}

// ValuesStore holds one package's values and applies hooks' patches to
// them, validating against the package's values.schema.json first. It is
// safe for concurrent use.
//
// The package's values are its defaults (values.yaml) merged with its config
// values (the GadgetPackage's settings), with every values patch hooks made
// replayed on top. Config-values patches change the settings and are
// persisted through a SettingsWriter.
type ValuesStore struct {
	key    string
	schema []byte
	writer SettingsWriter

	mu sync.Mutex
	// guarded by mu
	global   map[string]any
	defaults map[string]any
	config   map[string]any
	patches  jsonpatch.Patch
	// version counts changes of config, so a persisted patch is only
	// committed over the settings it was computed from.
	version int
}

// ValuesStoreOptions configure NewValuesStore.
type ValuesStoreOptions struct {
	// Package is the package's name; its values live under ValuesKey(Package).
	Package string
	// Schema is the package's values.schema.json; nil skips validation.
	Schema []byte
	// Defaults are the package's values.yaml.
	Defaults map[string]any
	// Settings are the package's config values.
	Settings map[string]any
	// Global are the values every package sees under "global".
	Global map[string]any
	// Writer persists config-values patches; nil keeps them in memory.
	Writer SettingsWriter
}

// NewValuesStore returns a store for one package.
func NewValuesStore(opts ValuesStoreOptions) (*ValuesStore, error) {
	if opts.Package == "" {
		return nil, errors.New("create values store: Package is required")
	}
	s := &ValuesStore{
		key:      ValuesKey(opts.Package),
		schema:   opts.Schema,
		writer:   opts.Writer,
		global:   deepCopyMap(opts.Global),
		defaults: deepCopyMap(opts.Defaults),
		config:   deepCopyMap(opts.Settings),
	}
	// Refuse a package whose defaults and settings already break its
	// schema: every hook run would fail later with a less clear error.
	if _, err := s.effective(s.config, nil); err != nil {
		return nil, fmt.Errorf("create values store: %w", err)
	}
	return s, nil
}

// Key is the package's key in the values layout.
func (s *ValuesStore) Key() string { return s.key }

// SetSettings replaces the config values, e.g. after the GadgetPackage's
// settings changed. Values patches hooks made are kept.
func (s *ValuesStore) SetSettings(settings map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := deepCopyMap(settings)
	if _, err := s.effective(cfg, s.patches); err != nil {
		return fmt.Errorf("set settings of %s: %w", s.key, err)
	}
	s.config = cfg
	s.version++
	return nil
}

// Values returns a copy of the values in the layout hooks read from
// VALUES_PATH.
func (s *ValuesStore) Values() (Values, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pkg, err := s.effective(s.config, s.patches)
	if err != nil {
		return nil, err
	}
	return Values{GlobalValuesKey: deepCopyMap(s.global), s.key: pkg}, nil
}

// PackageValues returns the package's own values, as the chart sees them in
// .Values.
func (s *ValuesStore) PackageValues() (map[string]any, error) {
	v, err := s.Values()
	if err != nil {
		return nil, err
	}
	m, _ := v[s.key].(map[string]any)
	return m, nil
}

// ConfigValues returns a copy of the config values in the layout hooks read
// from CONFIG_VALUES_PATH.
func (s *ValuesStore) ConfigValues() Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Values{GlobalValuesKey: deepCopyMap(s.global), s.key: deepCopyMap(s.config)}
}

// PatchValues applies a hook's values patch (paths rooted at
// "/<valuesKey>/"). The result must satisfy the schema; otherwise nothing
// changes and the error says why.
func (s *ValuesStore) PatchValues(ops jsonpatch.Patch) error {
	return s.Patch(context.Background(), nil, ops)
}

// PatchConfigValues applies a hook's config-values patch, validates the
// resulting values and persists the new settings. Nothing changes when any
// step fails.
func (s *ValuesStore) PatchConfigValues(ctx context.Context, ops jsonpatch.Patch) error {
	return s.Patch(ctx, ops, nil)
}

// PatchError is a patch Patch refused, saying which of the two it was.
type PatchError struct {
	// Config is true for the config-values patch, false for the values
	// patch.
	Config bool
	Err    error
}

// Error implements error.
func (e *PatchError) Error() string {
	if e.Config {
		return "config values patch rejected: " + e.Err.Error()
	}
	return "values patch rejected: " + e.Err.Error()
}

// Unwrap returns the reason.
func (e *PatchError) Unwrap() error { return e.Err }

// Patch applies one run's config-values patch and values patch as a whole:
// both are checked (their paths, that they apply, and the schema on the
// values that result from both) before the settings are persisted, so a
// rejected values patch leaves the settings in the cluster and in memory as
// they were. Nothing changes when any step fails; a refused patch is a
// *PatchError naming which patch it was.
func (s *ValuesStore) Patch(ctx context.Context, configOps, valuesOps jsonpatch.Patch) error {
	if len(configOps) == 0 && len(valuesOps) == 0 {
		return nil
	}
	if err := s.checkRoots(configOps); err != nil {
		return &PatchError{Config: true, Err: err}
	}
	if err := s.checkRoots(valuesOps); err != nil {
		return &PatchError{Err: err}
	}
	// Compute and validate under the lock, persist without it (the writer
	// talks to the API server), then commit only if nothing changed the
	// settings meanwhile.
	s.mu.Lock()
	cfg, err := s.validate(configOps, valuesOps)
	version := s.version
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if len(configOps) > 0 && s.writer != nil {
		if err := s.writer.WriteSettings(ctx, cfg); err != nil {
			return &PatchError{Config: true, Err: fmt.Errorf("persist settings of %s: %w", s.key, err)}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version != version {
		return &PatchError{Config: len(configOps) > 0, Err: fmt.Errorf("apply patches to %s: settings changed meanwhile; run the hook again", s.key)}
	}
	// Another run's values patch may have landed meanwhile: check the
	// whole once more before committing.
	all := append(append(jsonpatch.Patch{}, s.patches...), valuesOps...)
	if _, err := s.effective(cfg, all); err != nil {
		return &PatchError{Err: err}
	}
	if len(configOps) > 0 {
		s.config = cfg
		s.version++
	}
	s.patches = all
	return nil
}

// validate applies configOps to the config values and valuesOps after the
// patches so far, and checks the result against the schema. It returns the
// new config values. Callers hold mu.
func (s *ValuesStore) validate(configOps, valuesOps jsonpatch.Patch) (map[string]any, error) {
	cfg := s.config
	if len(configOps) > 0 {
		var err error
		if cfg, err = s.patchedConfig(configOps); err != nil {
			return nil, &PatchError{Config: true, Err: err}
		}
	}
	all := append(append(jsonpatch.Patch{}, s.patches...), valuesOps...)
	if _, err := s.effective(cfg, all); err != nil {
		return nil, &PatchError{Err: err}
	}
	return cfg, nil
}

// patchedConfig applies ops to the config values and validates the result.
// Callers hold mu.
func (s *ValuesStore) patchedConfig(ops jsonpatch.Patch) (map[string]any, error) {
	doc, err := json.Marshal(map[string]any{s.key: nonNil(s.config)})
	if err != nil {
		return nil, fmt.Errorf("encode config values: %w", err)
	}
	out, err := ops.ApplyWithOptions(doc, patchOptions())
	if err != nil {
		return nil, fmt.Errorf("apply config values patch: %w", err)
	}
	var layout map[string]any
	if err := json.Unmarshal(out, &layout); err != nil {
		return nil, fmt.Errorf("decode patched config values: %w", err)
	}
	cfg, ok := layout[s.key].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("apply config values patch: /%s must stay an object", s.key)
	}
	if _, err := s.effective(cfg, s.patches); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkRoots refuses patches outside the package's own values: a package
// hook may not change global values or another package's.
func (s *ValuesStore) checkRoots(ops jsonpatch.Patch) error {
	prefix := "/" + s.key
	for i, op := range ops {
		for _, get := range []func() (string, error){op.Path, op.From} {
			p, err := get()
			if err != nil {
				continue
			}
			if p != prefix && !strings.HasPrefix(p, prefix+"/") {
				return fmt.Errorf("values patch operation %d (%s %s): paths must start with %s/", i, op.Kind(), p, prefix)
			}
		}
	}
	return nil
}

// effective merges defaults and cfg, replays patches and validates the
// result against the schema. Callers hold mu.
func (s *ValuesStore) effective(cfg map[string]any, patches jsonpatch.Patch) (map[string]any, error) {
	merged := mergeMaps(deepCopyMap(s.defaults), deepCopyMap(cfg))
	if len(patches) > 0 {
		doc, err := json.Marshal(map[string]any{s.key: merged})
		if err != nil {
			return nil, fmt.Errorf("encode values: %w", err)
		}
		out, err := patches.ApplyWithOptions(doc, patchOptions())
		if err != nil {
			return nil, fmt.Errorf("apply values patch: %w", err)
		}
		var layout map[string]any
		if err := json.Unmarshal(out, &layout); err != nil {
			return nil, fmt.Errorf("decode patched values: %w", err)
		}
		m, ok := layout[s.key].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("apply values patch: /%s must stay an object", s.key)
		}
		merged = m
	}
	if len(s.schema) > 0 {
		if err := helmchartutil.ValidateAgainstSingleSchema(helmchartutil.Values(merged), s.schema); err != nil {
			return nil, fmt.Errorf("values of %s do not match values.schema.json: %s", s.key, strings.TrimSpace(err.Error()))
		}
	}
	return merged, nil
}

func patchOptions() *jsonpatch.ApplyOptions {
	o := jsonpatch.NewApplyOptions()
	// A remove of a missing key is a no-op, as in addon-operator.
	o.AllowMissingPathOnRemove = true
	o.EnsurePathExistsOnAdd = true
	return o
}

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// mergeMaps merges src into dst recursively (src wins) and returns dst.
func mergeMaps(dst, src map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// deepCopyMap copies a JSON-like tree; nil stays nil.
func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopyValue(v)
	}
	return out
}

func deepCopyValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return deepCopyMap(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deepCopyValue(e)
		}
		return out
	default:
		return v
	}
}
