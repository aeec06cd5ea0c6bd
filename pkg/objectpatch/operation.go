package objectpatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/itchyny/gojq"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// OperationType names what an Operation does, in shell-operator's words.
type OperationType string

// The operations a hook may write.
const (
	// Create creates Object; it fails when the object exists.
	Create OperationType = "Create"
	// CreateOrUpdate creates Object or replaces the existing one.
	CreateOrUpdate OperationType = "CreateOrUpdate"
	// CreateIfNotExists creates Object and leaves an existing one alone.
	CreateIfNotExists OperationType = "CreateIfNotExists"
	// Delete deletes with foreground propagation: dependents go first.
	Delete OperationType = "Delete"
	// DeleteInBackground deletes at once; dependents are removed later.
	DeleteInBackground OperationType = "DeleteInBackground"
	// DeleteNonCascading deletes and orphans the dependents.
	DeleteNonCascading OperationType = "DeleteNonCascading"
	// MergePatch sends MergePatch as a JSON merge patch (RFC 7386).
	MergePatch OperationType = "MergePatch"
	// JSONPatch sends JSONPatch as a JSON patch (RFC 6902).
	JSONPatch OperationType = "JSONPatch"
	// JQPatch reads the object, applies JQFilter and writes the result back.
	JQPatch OperationType = "JQPatch"
)

var operationTypes = []OperationType{Create, CreateOrUpdate, CreateIfNotExists, Delete, DeleteInBackground, DeleteNonCascading, MergePatch, JSONPatch, JQPatch}

// ErrInvalidOperation is matched (errors.Is) by every parse error.
var ErrInvalidOperation = errors.New("invalid patch operation")

// Operation is one parsed patch operation.
type Operation struct {
	// Index is the operation's position in the input, from 1.
	Index int
	// Type is what to do.
	Type OperationType
	// Object is the object to create (Create, CreateOrUpdate,
	// CreateIfNotExists).
	Object *unstructured.Unstructured
	// APIVersion, Kind, Namespace and Name name the target of the other
	// operations. Kind may be a plural or short name, in any case.
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// Subresource, e.g. "status", is written instead of the main resource
	// (after creating it, for the Create operations).
	Subresource string
	// MergePatch is the JSON merge patch of a MergePatch operation.
	MergePatch json.RawMessage
	// JSONPatch is the JSON patch array of a JSONPatch operation.
	JSONPatch json.RawMessage
	// JQFilter is the filter of a JQPatch operation; it gets the object
	// and yields its new content.
	JQFilter string
	// IgnoreMissingObject makes a patch of an object that does not exist
	// succeed without doing anything.
	IgnoreMissingObject bool

	jq *gojq.Code
}

// Target returns "apiVersion/Kind namespace/name" for messages.
func (op *Operation) Target() string {
	apiVersion, kind, ns, name := op.APIVersion, op.Kind, op.Namespace, op.Name
	if op.Object != nil {
		apiVersion, kind, ns, name = op.Object.GetAPIVersion(), op.Object.GetKind(), op.Object.GetNamespace(), op.Object.GetName()
		if name == "" && op.Object.GetGenerateName() != "" {
			name = op.Object.GetGenerateName() + "*"
		}
	}
	gvk := kind
	if apiVersion != "" {
		gvk = apiVersion + "/" + kind
	}
	if ns != "" {
		return gvk + " " + ns + "/" + name
	}
	return gvk + " " + name
}

func (op *Operation) describe() string {
	if op.Type == "" {
		return fmt.Sprintf("operation %d", op.Index)
	}
	if op.Kind == "" && op.Object == nil {
		return fmt.Sprintf("operation %d (%s)", op.Index, op.Type)
	}
	return fmt.Sprintf("operation %d (%s %s)", op.Index, op.Type, op.Target())
}

// rawOperation is the document as a hook writes it.
type rawOperation struct {
	Operation           string          `json:"operation"`
	Object              json.RawMessage `json:"object"`
	APIVersion          string          `json:"apiVersion"`
	Kind                string          `json:"kind"`
	Namespace           string          `json:"namespace"`
	Name                string          `json:"name"`
	Subresource         string          `json:"subresource"`
	MergePatch          json.RawMessage `json:"mergePatch"`
	JSONPatch           json.RawMessage `json:"jsonPatch"`
	JQFilter            string          `json:"jqFilter"`
	IgnoreMissingObject bool            `json:"ignoreMissingObject"`
}

// ParseOperations reads one or many YAML or JSON documents (YAML separated
// by "---", JSON concatenated, or a list of operations in one document) and
// returns the operations in order. Empty documents are skipped. Every
// invalid operation is reported, each naming its index and the field at
// fault; the error then matches ErrInvalidOperation and no operation is
// returned.
func ParseOperations(data []byte) ([]Operation, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var ops []Operation
	var errs []error
	for _, doc := range docs {
		op := Operation{Index: len(ops) + 1}
		if err := op.parse(doc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", op.describe(), err))
		}
		ops = append(ops, op)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOperation, errors.Join(errs...))
	}
	return ops, nil
}

// splitDocuments returns each operation document as JSON.
func splitDocuments(data []byte) ([]json.RawMessage, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []json.RawMessage
	for n := 1; ; n++ {
		var doc json.RawMessage
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: document %d is not YAML or JSON: %v", ErrInvalidOperation, n, err)
		}
		doc = bytes.TrimSpace(doc)
		switch {
		case len(doc) == 0 || bytes.Equal(doc, []byte("null")):
		case doc[0] == '[':
			var list []json.RawMessage
			if err := json.Unmarshal(doc, &list); err != nil {
				return nil, fmt.Errorf("%w: document %d: %v", ErrInvalidOperation, n, err)
			}
			out = append(out, list...)
		default:
			out = append(out, doc)
		}
	}
}

func (op *Operation) parse(doc json.RawMessage) error {
	var raw rawOperation
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		if strings.HasPrefix(strings.TrimSpace(string(doc)), "{") {
			return fmt.Errorf("%v: expected the fields operation, object, apiVersion, kind, namespace, name, subresource, mergePatch, jsonPatch, jqFilter, ignoreMissingObject", strings.TrimPrefix(err.Error(), "json: "))
		}
		return fmt.Errorf("expected an object with an operation field, got %s", abbreviate(doc))
	}
	if raw.Operation == "" {
		return errors.New("field operation is missing: expected one of " + typeList())
	}
	for _, t := range operationTypes {
		if strings.EqualFold(raw.Operation, string(t)) {
			op.Type = t
		}
	}
	if op.Type == "" {
		return fmt.Errorf("field operation is %q: expected one of %s", raw.Operation, typeList())
	}
	op.APIVersion, op.Kind, op.Namespace, op.Name = raw.APIVersion, raw.Kind, raw.Namespace, raw.Name
	op.Subresource, op.JQFilter, op.IgnoreMissingObject = raw.Subresource, raw.JQFilter, raw.IgnoreMissingObject
	if raw.APIVersion != "" {
		if _, err := schema.ParseGroupVersion(raw.APIVersion); err != nil {
			return fmt.Errorf("field apiVersion %q: %v", raw.APIVersion, err)
		}
	}

	forbid := func(fields map[string]bool) error {
		for name, set := range fields {
			if set {
				return fmt.Errorf("field %s is not used by %s", name, op.Type)
			}
		}
		return nil
	}
	switch op.Type {
	case Create, CreateOrUpdate, CreateIfNotExists:
		if err := forbid(map[string]bool{"mergePatch": raw.MergePatch != nil, "jsonPatch": raw.JSONPatch != nil, "jqFilter": raw.JQFilter != "",
			"apiVersion": raw.APIVersion != "", "kind": raw.Kind != "", "name": raw.Name != "", "namespace": raw.Namespace != ""}); err != nil {
			return fmt.Errorf("%w (the object carries its apiVersion, kind and metadata)", err)
		}
		obj, err := parseObject(raw.Object)
		if err != nil {
			return err
		}
		op.Object = obj
	case Delete, DeleteInBackground, DeleteNonCascading:
		if err := forbid(map[string]bool{"object": raw.Object != nil, "mergePatch": raw.MergePatch != nil, "jsonPatch": raw.JSONPatch != nil,
			"jqFilter": raw.JQFilter != "", "subresource": raw.Subresource != ""}); err != nil {
			return err
		}
		return requireTarget(raw)
	case MergePatch:
		if err := forbid(map[string]bool{"object": raw.Object != nil, "jsonPatch": raw.JSONPatch != nil, "jqFilter": raw.JQFilter != ""}); err != nil {
			return err
		}
		if err := requireTarget(raw); err != nil {
			return err
		}
		p, err := embedded(raw.MergePatch, "mergePatch", "a JSON merge patch object")
		if err != nil {
			return err
		}
		if len(p) == 0 || p[0] != '{' {
			return fmt.Errorf("field mergePatch is %s: expected a JSON merge patch object", abbreviate(p))
		}
		op.MergePatch = p
	case JSONPatch:
		if err := forbid(map[string]bool{"object": raw.Object != nil, "mergePatch": raw.MergePatch != nil, "jqFilter": raw.JQFilter != ""}); err != nil {
			return err
		}
		if err := requireTarget(raw); err != nil {
			return err
		}
		p, err := embedded(raw.JSONPatch, "jsonPatch", "a JSON patch array")
		if err != nil {
			return err
		}
		var list []map[string]any
		if err := json.Unmarshal(p, &list); err != nil {
			return fmt.Errorf("field jsonPatch is %s: expected a JSON patch array of {op, path, value} objects", abbreviate(p))
		}
		for i, e := range list {
			if _, ok := e["op"].(string); !ok {
				return fmt.Errorf("field jsonPatch[%d] has no op: expected add, remove, replace, move, copy or test", i)
			}
			if _, ok := e["path"].(string); !ok {
				return fmt.Errorf("field jsonPatch[%d] has no path", i)
			}
		}
		op.JSONPatch = p
	case JQPatch:
		if err := forbid(map[string]bool{"object": raw.Object != nil, "mergePatch": raw.MergePatch != nil, "jsonPatch": raw.JSONPatch != nil}); err != nil {
			return err
		}
		if err := requireTarget(raw); err != nil {
			return err
		}
		if raw.JQFilter == "" {
			return errors.New("field jqFilter is missing: expected a jq program that yields the new object")
		}
		q, err := gojq.Parse(raw.JQFilter)
		if err == nil {
			op.jq, err = gojq.Compile(q)
		}
		if err != nil {
			return fmt.Errorf("field jqFilter %q does not compile: %v", raw.JQFilter, err)
		}
	}
	return nil
}

func requireTarget(raw rawOperation) error {
	if raw.Kind == "" {
		return errors.New("field kind is missing: expected the kind of the target object")
	}
	if raw.Name == "" {
		return errors.New("field name is missing: expected the name of the target object")
	}
	return nil
}

// parseObject accepts the object inline or as a YAML/JSON string.
func parseObject(raw json.RawMessage) (*unstructured.Unstructured, error) {
	b, err := embedded(raw, "object", "a Kubernetes object")
	if err != nil {
		return nil, err
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("field object is %s: expected a Kubernetes object", abbreviate(b))
	}
	var head struct {
		APIVersion any `json:"apiVersion"`
		Kind       any `json:"kind"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("field object: %v", err)
	}
	if s, ok := head.APIVersion.(string); !ok || s == "" {
		return nil, errors.New("field object.apiVersion is missing: expected e.g. v1 or apps/v1")
	}
	if s, ok := head.Kind.(string); !ok || s == "" {
		return nil, errors.New("field object.kind is missing: expected e.g. ConfigMap")
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("field object: %v", err)
	}
	if obj.GetName() == "" && obj.GetGenerateName() == "" {
		return nil, errors.New("field object.metadata.name is missing: expected the object's name")
	}
	return obj, nil
}

// embedded returns a field's JSON, decoding it first when the hook wrote it
// as a string holding YAML or JSON, as shell-operator allows.
func embedded(raw json.RawMessage, field, what string) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, fmt.Errorf("field %s is missing: expected %s", field, what)
	}
	if raw[0] != '"' {
		return raw, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("field %s: %v", field, err)
	}
	b, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("field %s is a string that is not YAML or JSON: %v", field, err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil, fmt.Errorf("field %s is empty: expected %s", field, what)
	}
	return b, nil
}

func typeList() string {
	s := make([]string, len(operationTypes))
	for i, t := range operationTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func abbreviate(b []byte) string {
	const max = 60
	s := string(b)
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
