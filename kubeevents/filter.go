package kubeevents

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	"github.com/itchyny/gojq"
)

// FilterError says that a binding's jqFilter does not compile.
type FilterError struct {
	Filter string
	Err    error
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("jqFilter %q does not compile: %v", e.Filter, e.Err)
}

// Unwrap returns gojq's error.
func (e *FilterError) Unwrap() error { return e.Err }

// filter is a compiled jqFilter. A nil *filter means no filter. It is safe
// for concurrent use (gojq's Code is).
type filter struct {
	src  string
	code *gojq.Code
}

func compileFilter(src string) (*filter, error) {
	if src == "" {
		return nil, nil
	}
	q, err := gojq.Parse(src)
	if err != nil {
		return nil, &FilterError{Filter: src, Err: err}
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return nil, &FilterError{Filter: src, Err: err}
	}
	return &filter{src: src, code: code}, nil
}

// run applies the filter to an object as the API server returned it and
// returns the result as JSON. A filter that yields nothing gives null; one
// that yields several values gives them as an array, as `[filter]` would.
func (f *filter) run(obj map[string]any) (json.RawMessage, error) {
	iter := f.code.Run(normalize(obj))
	var results []any
	for {
		v, ok := iter.Next()
		if !ok {
			break
		}
		if err, ok := v.(error); ok {
			if herr, ok := err.(*gojq.HaltError); ok && herr.Value() == nil {
				break
			}
			return nil, fmt.Errorf("run jqFilter %q: %w", f.src, err)
		}
		results = append(results, v)
	}
	var out any
	switch len(results) {
	case 0:
	case 1:
		out = results[0]
	default:
		out = results
	}
	b, err := gojq.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode result of jqFilter %q: %w", f.src, err)
	}
	return b, nil
}

// normalize copies an unstructured object into the value types gojq accepts:
// the JSON decoder behind unstructured objects yields int64, which gojq does
// not know.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalize(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = normalize(e)
		}
		return s
	case int64:
		return int(x)
	case int32:
		return int(x)
	case float32:
		return float64(x)
	default:
		return v
	}
}

// checksum identifies a filter result so that an unchanged one fires
// nothing.
func checksum(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}
