package nelm

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestDiffObjectsWithIgnoredPointers(t *testing.T) {
	live := `{"metadata":{"name":"x","resourceVersion":"7","managedFields":[{"manager":"a"}],"annotations":{"example.com/note":"hand","keep":"1"}},
		"spec":{"replicas":3,"ports":[{"port":80},{"port":81}],"tags":["a","b"],"a~b":1},"status":{"ready":1}}`
	tests := []struct {
		name    string
		dry     string
		ignored []string
		want    []string
	}{
		{name: "same but server fields", dry: strings.ReplaceAll(live, `"7"`, `"8"`), want: nil},
		{name: "a leaf", dry: strings.Replace(live, `"replicas":3`, `"replicas":1`, 1), want: []string{"/spec/replicas"}},
		{name: "a list item's field", dry: strings.Replace(live, `"port":81`, `"port":82`, 1), want: []string{"/spec/ports/1/port"}},
		{name: "a list of another length", dry: strings.Replace(live, `["a","b"]`, `["a"]`, 1), want: []string{"/spec/tags"}},
		{name: "escaped keys", dry: strings.Replace(strings.Replace(live, `"hand"`, `"chart"`, 1), `"a~b":1`, `"a~b":2`, 1),
			want: []string{"/metadata/annotations/example.com~1note", "/spec/a~0b"}},
		{name: "ignored by escaped pointer", dry: strings.Replace(live, `"hand"`, `"chart"`, 1),
			ignored: []string{"/metadata/annotations/example.com~1note"}, want: nil},
		{name: "ignored list item", dry: strings.Replace(live, `"port":81`, `"port":82`, 1), ignored: []string{"/spec/ports/1"}, want: nil},
		{name: "ignored path that does not exist", dry: strings.Replace(live, `"replicas":3`, `"replicas":1`, 1),
			ignored: []string{"/spec/nothing/here", "/spec/ports/9"}, want: []string{"/spec/replicas"}},
		{name: "a key only on one side", dry: strings.Replace(live, `"keep":"1"`, `"keep":"1","new":"2"`, 1), want: []string{"/metadata/annotations/new"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a, b map[string]any
			if err := json.Unmarshal([]byte(live), &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.dry), &b); err != nil {
				t.Fatal(err)
			}
			got, err := diffObjects(a, b, tc.ignored)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("diff = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPointerTokens(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "/spec/replicas", want: []string{"spec", "replicas"}},
		{in: "/metadata/annotations/example.com~1note", want: []string{"metadata", "annotations", "example.com/note"}},
		{in: "/a~0b/~01", want: []string{"a~b", "~1"}},
		{in: "spec/replicas", wantErr: "must start with '/'"},
		{in: "/a~2", wantErr: "'~' must be followed by 0"},
		{in: "/a~", wantErr: "'~' must be followed by 0"},
	}
	for _, tc := range tests {
		got, err := pointerTokens(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("pointerTokens(%q) error = %v, want %q", tc.in, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("pointerTokens(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
