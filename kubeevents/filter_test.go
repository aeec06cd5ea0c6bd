package kubeevents

import (
	"errors"
	"strings"
	"testing"
)

func TestFilter(t *testing.T) {
	obj := map[string]any{
		"metadata": map[string]any{"name": "a", "labels": map[string]any{"x": "1"}},
		"spec":     map[string]any{"replicas": int64(3), "ratio": 0.5, "list": []any{int64(1), "two"}},
	}
	tests := []struct {
		filter, want string
	}{
		{".metadata.name", `"a"`},
		{".spec.replicas + 1", `4`},
		{".spec", `{"list":[1,"two"],"ratio":0.5,"replicas":3}`},
		{".spec.list[]", `[1,"two"]`},
		{"empty", `null`},
		{".missing", `null`},
		{"{b: .metadata.labels.x, a: 1}", `{"a":1,"b":"1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			f, err := compileFilter(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.run(obj)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	// The object is left as it was: int64 stays int64.
	if _, ok := obj["spec"].(map[string]any)["replicas"].(int64); !ok {
		t.Fatal("run changed the object")
	}
}

func TestFilterErrors(t *testing.T) {
	for _, src := range []string{".a |", "nosuch(1)", "{"} {
		_, err := compileFilter(src)
		var fe *FilterError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), src) {
			t.Errorf("compileFilter(%q) = %v, want a FilterError naming the filter", src, err)
		}
	}
	f, err := compileFilter(`error("boom")`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.run(map[string]any{}); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("run = %v, want the filter's error", err)
	}
	if f, _ := compileFilter(""); f != nil {
		t.Fatal("empty filter compiled to a filter")
	}
}

func TestChecksumDiffers(t *testing.T) {
	if checksum([]byte(`"1"`)) == checksum([]byte(`"2"`)) {
		t.Fatal("different results share a checksum")
	}
	if checksum([]byte(`{"a":1}`)) != checksum([]byte(`{"a":1}`)) {
		t.Fatal("equal results differ")
	}
}
