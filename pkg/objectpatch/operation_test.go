package objectpatch

import (
	"errors"
	"strings"
	"testing"
)

func TestParseOperations(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // Type and Target of each operation
	}{
		{"yaml stream", `
operation: Create
object:
  apiVersion: v1
  kind: ConfigMap
  metadata: {name: a, namespace: ns}
---
---
operation: Delete
kind: ConfigMap
namespace: ns
name: b
`, []string{"Create v1/ConfigMap ns/a", "Delete ConfigMap ns/b"}},
		{"json stream", `{"operation":"MergePatch","apiVersion":"v1","kind":"cm","namespace":"ns","name":"a","mergePatch":{"data":{"k":"v"}}}
{"operation":"JSONPatch","kind":"ConfigMap","namespace":"ns","name":"a","jsonPatch":[{"op":"add","path":"/data/x","value":"1"}]}`,
			[]string{"MergePatch v1/cm ns/a", "JSONPatch ConfigMap ns/a"}},
		{"json list", `[{"operation":"JQPatch","kind":"Namespace","name":"n","jqFilter":".metadata.labels.a = \"b\""},{"operation":"DeleteInBackground","kind":"Namespace","name":"n"}]`,
			[]string{"JQPatch Namespace n", "DeleteInBackground Namespace n"}},
		{"strings holding yaml", "operation: createOrUpdate\nobject: |\n  apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: s\n---\noperation: MergePatch\nkind: ConfigMap\nname: s\nmergePatch: |\n  data:\n    a: b\n",
			[]string{"CreateOrUpdate v1/ConfigMap s", "MergePatch ConfigMap s"}},
		{"empty", "\n---\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := ParseOperations([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, op := range ops {
				if op.Index != i+1 {
					t.Errorf("operation %d has index %d", i+1, op.Index)
				}
				got = append(got, string(op.Type)+" "+op.Target())
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	ops, err := ParseOperations([]byte("operation: MergePatch\nkind: ConfigMap\nname: s\nmergePatch: |\n  data:\n    a: b\n"))
	if err != nil || string(ops[0].MergePatch) != `{"data":{"a":"b"}}` {
		t.Fatalf("mergePatch from a YAML string = %s, %v", ops[0].MergePatch, err)
	}
}

func TestParseOperationsRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		mention []string
	}{
		{"not yaml", "operation: [Create", []string{"document 1", "not YAML or JSON"}},
		{"not an object", `"Create"`, []string{"operation 1", "expected an object"}},
		{"no operation", "kind: ConfigMap\nname: a", []string{"operation 1", "field operation is missing", "CreateOrUpdate"}},
		{"unknown operation", "operation: Upsert\nkind: ConfigMap\nname: a", []string{"operation 1", `"Upsert"`, "JQPatch"}},
		{"unknown field", "operation: Delete\nkind: ConfigMap\nname: a\nnamespaec: x", []string{"operation 1", `"namespaec"`}},
		{"create without object", "operation: Create", []string{"operation 1 (Create)", "field object is missing"}},
		{"create object not an object", "operation: Create\nobject: [1]", []string{"field object", "expected a Kubernetes object"}},
		{"create object without name", "operation: Create\nobject: {apiVersion: v1, kind: ConfigMap}", []string{"object.metadata.name"}},
		{"create object without kind", "operation: Create\nobject: {apiVersion: v1, metadata: {name: a}}", []string{"operation 1", "kind"}},
		{"create with a patch field", "operation: Create\nmergePatch: {}\nobject: {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}", []string{"mergePatch is not used by Create"}},
		{"delete without name", "operation: Delete\nkind: ConfigMap", []string{"operation 1 (Delete ConfigMap", "field name is missing"}},
		{"delete without kind", "operation: Delete\nname: a", []string{"field kind is missing"}},
		{"delete with subresource", "operation: DeleteNonCascading\nkind: ConfigMap\nname: a\nsubresource: status", []string{"subresource is not used by DeleteNonCascading"}},
		{"merge patch missing", "operation: MergePatch\nkind: ConfigMap\nname: a", []string{"field mergePatch is missing"}},
		{"merge patch not an object", "operation: MergePatch\nkind: ConfigMap\nname: a\nmergePatch: [1]", []string{"expected a JSON merge patch object"}},
		{"json patch not a list", "operation: JSONPatch\nkind: ConfigMap\nname: a\njsonPatch: {op: add}", []string{"expected a JSON patch array"}},
		{"json patch without op", "operation: JSONPatch\nkind: ConfigMap\nname: a\njsonPatch: [{path: /a}]", []string{"jsonPatch[0] has no op"}},
		{"jq patch without filter", "operation: JQPatch\nkind: ConfigMap\nname: a", []string{"field jqFilter is missing"}},
		{"jq patch that does not compile", "operation: JQPatch\nkind: ConfigMap\nname: a\njqFilter: '.a |'", []string{"jqFilter \".a |\" does not compile"}},
		{"bad apiVersion", "operation: Delete\napiVersion: a/b/c\nkind: ConfigMap\nname: a", []string{`apiVersion "a/b/c"`}},
		{"second of three bad", "operation: Delete\nkind: ConfigMap\nname: a\n---\noperation: Delete\nkind: ConfigMap\n---\noperation: Nope", []string{"operation 2", "operation 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := ParseOperations([]byte(tt.in))
			if err == nil {
				t.Fatalf("accepted: %+v", ops)
			}
			if !errors.Is(err, ErrInvalidOperation) {
				t.Errorf("error %q is not ErrInvalidOperation", err)
			}
			if ops != nil {
				t.Errorf("operations returned with an error: %+v", ops)
			}
			for _, s := range tt.mention {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
		})
	}
}
