package ebpfstage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Metadata is gadget/gadget.yaml: descriptions and annotations added to
// what the object declares. Every data source, field and param it names
// must exist in the object. Two layouts are read: gadgetpm's (params by
// variable name under `params`) and Inspektor Gadget's (params under
// `params.ebpf`, field descriptions and column hints in `annotations`).
type Metadata struct {
	MetadataCommon `yaml:",inline"`
	// Params by key (the C variable's name).
	Params map[string]ParamMetadata `yaml:"params"`
	// igLayout is set when the file was in Inspektor Gadget's layout
	igLayout bool
}

// MetadataCommon is what both layouts of gadget.yaml share.
type MetadataCommon struct {
	// Name of the gadget.
	Name string `yaml:"name"`
	// Description of the gadget.
	Description string `yaml:"description"`
	// HomepageURL, DocumentationURL and SourceURL are Inspektor Gadget's
	// links, kept for catalogs.
	HomepageURL      string `yaml:"homepageURL"`
	DocumentationURL string `yaml:"documentationURL"`
	SourceURL        string `yaml:"sourceURL"`
	// Annotations of the gadget are free-form.
	Annotations map[string]string `yaml:"annotations"`
	// DataSources by name.
	DataSources map[string]DataSourceMetadata `yaml:"datasources"`
}

// igMetadata is Inspektor Gadget's layout: params of the eBPF program
// under params.ebpf.
type igMetadata struct {
	MetadataCommon `yaml:",inline"`
	Params         igParams `yaml:"params"`
}

// igParams is the params section of Inspektor Gadget's layout; only the
// eBPF program's params are read.
type igParams struct {
	EBPF map[string]ParamMetadata `yaml:"ebpf"`
}

// DataSourceMetadata annotates one data source.
type DataSourceMetadata struct {
	Description string                   `yaml:"description"`
	Fields      map[string]FieldMetadata `yaml:"fields"`
	// Annotations are free-form (Inspektor Gadget's data-source
	// annotations).
	Annotations map[string]string `yaml:"annotations"`
}

// FieldMetadata annotates one field.
type FieldMetadata struct {
	Description string `yaml:"description"`
	// Kind overrides the kind read from BTF, e.g. "stringlist" for a char
	// array of NUL-separated arguments.
	Kind string `yaml:"kind"`
	// Hidden fields are decoded but not printed.
	Hidden bool `yaml:"hidden"`
	// Annotations are free-form; Inspektor Gadget's "description" and
	// "columns.hidden" set Description and Hidden when those are not set.
	Annotations map[string]string `yaml:"annotations"`
}

// Annotations of Inspektor Gadget's gadget.yaml that the runtime reads.
const (
	annotationDescription = "description"
	annotationHidden      = "columns.hidden"
)

// ParamMetadata annotates one param.
type ParamMetadata struct {
	Description string `yaml:"description"`
	// Key is the name users give the param (Inspektor Gadget's `key`);
	// default: the variable's name.
	Key string `yaml:"key"`
	// DefaultValue replaces the variable's initial value as the default
	// (Inspektor Gadget's `defaultValue`).
	DefaultValue string `yaml:"defaultValue"`
	// PossibleValues, when set, are the only values the param accepts.
	PossibleValues []string `yaml:"possibleValues"`
	// TypeHint narrows the values the variable's type accepts (e.g. bool
	// for a __u8 flag, duration, uint16): one of the keys of typeHints.
	TypeHint string `yaml:"typeHint"`
}

// ParseMetadata reads gadget.yaml strictly: unknown keys are errors, so a
// misspelt "descripton" does not pass silently. Empty input is valid.
func ParseMetadata(b []byte) (*Metadata, error) {
	m := &Metadata{}
	if len(bytes.TrimSpace(b)) == 0 {
		return m, nil
	}
	if isIGLayout(b) {
		ig := &igMetadata{}
		if err := decodeStrict(b, ig); err != nil {
			return nil, err
		}
		m.MetadataCommon, m.Params, m.igLayout = ig.MetadataCommon, ig.Params.EBPF, true
		return m, nil
	}
	if err := decodeStrict(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parse gadget.yaml: %w", err)
	}
	return nil
}

// isIGLayout reports whether gadget.yaml is in Inspektor Gadget's layout:
// its `params` holds `ebpf`, a mapping of params (in gadgetpm's layout a
// param's value holds scalars only).
func isIGLayout(b []byte) bool {
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil || len(root.Content) == 0 {
		return false
	}
	params := mappingValue(root.Content[0], "params")
	ebpf := mappingValue(params, "ebpf")
	if ebpf == nil || ebpf.Kind != yaml.MappingNode {
		return false
	}
	for i := 1; i < len(ebpf.Content); i += 2 {
		if ebpf.Content[i].Kind != yaml.MappingNode {
			return false
		}
	}
	return true
}

// mappingValue returns the value of key in mapping node n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// apply adds m's annotations to the data sources and params and fails on
// names the object does not declare.
func (m *Metadata) apply(sources []*datasource.DataSource, params map[string]*param) error {
	for dsName, dm := range m.DataSources {
		var ds *datasource.DataSource
		for _, s := range sources {
			if s.Name() == dsName {
				ds = s
			}
		}
		if ds == nil {
			return fmt.Errorf("gadget.yaml: datasources.%s: the object declares no such data source (declare it with GADGET_TRACER or GADGET_SNAPSHOTTER)", dsName)
		}
		for fName, fm := range dm.Fields {
			f := ds.Field(fName)
			if f == nil {
				return fmt.Errorf("gadget.yaml: datasources.%s.fields.%s: the event struct has no such member", dsName, fName)
			}
			if fm.Kind != "" {
				k, err := datasource.ParseKind(fm.Kind)
				if err != nil {
					return fmt.Errorf("gadget.yaml: datasources.%s.fields.%s.kind: %w", dsName, fName, err)
				}
				if err := overrideKind(f, k); err != nil {
					return fmt.Errorf("gadget.yaml: datasources.%s.fields.%s.kind: %w", dsName, fName, err)
				}
			}
			f.Description = fm.Description
			if f.Description == "" {
				f.Description = fm.Annotations[annotationDescription]
			}
			f.Hidden = fm.Hidden
			if h, ok := fm.Annotations[annotationHidden]; ok && !f.Hidden {
				hidden, err := strconv.ParseBool(h)
				if err != nil {
					return fmt.Errorf("gadget.yaml: datasources.%s.fields.%s.annotations.%s: %q is not true or false", dsName, fName, annotationHidden, h)
				}
				f.Hidden = hidden
			}
			f.Annotations = fm.Annotations
			if err := applyColumns(f, fm.Annotations, fmt.Sprintf("gadget.yaml: datasources.%s.fields.%s", dsName, fName)); err != nil {
				return err
			}
		}
	}
	for key, pm := range m.Params {
		p, ok := params[key]
		if !ok {
			return fmt.Errorf("gadget.yaml: %s%s: the object declares no such param (declare it with GADGET_PARAM)", m.paramsPath(), key)
		}
		p.desc.Description = pm.Description
		if pm.TypeHint != "" {
			if _, known := typeHints[pm.TypeHint]; !known {
				return fmt.Errorf("gadget.yaml: %s%s.typeHint: unknown type %q (expected one of %s)", m.paramsPath(), key, pm.TypeHint, strings.Join(sortedKeys(typeHints), ", "))
			}
		}
		p.rules = paramRules{possible: pm.PossibleValues, hint: pm.TypeHint}
		p.desc.PossibleValues, p.desc.TypeHint = pm.PossibleValues, pm.TypeHint
		for _, v := range pm.PossibleValues {
			if _, err := p.encode(v); err != nil {
				return fmt.Errorf("gadget.yaml: %s%s.possibleValues: %w", m.paramsPath(), key, err)
			}
		}
		if pm.DefaultValue != "" {
			if err := p.set(pm.DefaultValue); err != nil {
				return fmt.Errorf("gadget.yaml: %s%s.defaultValue: %w", m.paramsPath(), key, err)
			}
			p.desc.Default = pm.DefaultValue
		}
	}
	// rename last: a key may be another param's variable name
	for key, pm := range m.Params {
		if pm.Key == "" || pm.Key == key {
			continue
		}
		if _, taken := params[pm.Key]; taken {
			return fmt.Errorf("gadget.yaml: %s%s.key: %q is already the key of another param", m.paramsPath(), key, pm.Key)
		}
		p := params[key]
		delete(params, key)
		p.desc.Key = pm.Key
		params[pm.Key] = p
	}
	return nil
}

// paramsPath is where params sit in the layout read, for errors.
func (m *Metadata) paramsPath() string {
	if m.igLayout {
		return "params.ebpf."
	}
	return "params."
}

// overrideKind changes a field's kind where the bytes allow it.
func overrideKind(f *datasource.Field, k datasource.Kind) error {
	switch k {
	case datasource.KindString, datasource.KindStringList, datasource.KindBytes:
		if f.Kind != datasource.KindString && f.Kind != datasource.KindStringList && f.Kind != datasource.KindBytes {
			return fmt.Errorf("%s needs a char array, the member is %s", k, f.Kind)
		}
	default:
		if !f.Kind.Integer() {
			return fmt.Errorf("%s needs an integer member, the member is %s", k, f.Kind)
		}
		probe := datasource.New("probe", datasource.TypeTracer)
		if _, err := probe.AddFieldAt(datasource.Field{Name: f.Name, Kind: k, Size: f.Size}); err != nil {
			return fmt.Errorf("member of %d bytes cannot be %s", f.Size, k)
		}
	}
	f.Kind = k
	f.Signed = k == datasource.KindErrno || k == datasource.KindInt8 || k == datasource.KindInt16 || k == datasource.KindInt32 || k == datasource.KindInt64 || (k == datasource.KindEnum && f.Signed)
	return nil
}
