package gadget

import (
	"fmt"
	"sort"
	"strings"
)

// Params are the values a run was given, by key ("target_port",
// "filter"). Stages read the keys they declared.
type Params map[string]string

// ParamDesc describes one param.
type ParamDesc struct {
	// Key as given on the command line or in a Trace's spec.parameters.
	Key string `json:"key"`
	// Type of the value ("uint16", "bool", "duration", "string").
	Type string `json:"type,omitempty"`
	// Default value as text.
	Default string `json:"default,omitempty"`
	// Description for --help and catalogs.
	Description string `json:"description,omitempty"`
	// PossibleValues, when set, are the only values accepted (gadget.yaml's
	// possibleValues).
	PossibleValues []string `json:"possibleValues,omitempty"`
	// TypeHint narrows the values Type accepts (gadget.yaml's typeHint,
	// e.g. int32 or bool).
	TypeHint string `json:"typeHint,omitempty"`
}

// ParseParams turns "key=value" strings into Params. An entry without "="
// or with an empty key is an error naming it.
func ParseParams(kv []string) (Params, error) {
	p := Params{}
	for _, s := range kv {
		k, v, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("param %q: expected key=value", s)
		}
		p[strings.TrimSpace(k)] = v
	}
	return p, nil
}

// checkParams fails on a param no stage declared, listing the known
// ones, so a typo never silently runs with a default.
func checkParams(given Params, known []ParamDesc) error {
	keys := map[string]bool{}
	for _, d := range known {
		keys[d.Key] = true
	}
	var unknown []string
	for k := range given {
		if !keys[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Errorf("unknown param %s (this gadget accepts: %s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
}
