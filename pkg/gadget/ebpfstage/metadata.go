package ebpfstage

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"

	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
)

// Metadata is gadget/gadget.yaml: descriptions and annotations added to
// what the object declares. Every data source, field and param it names
// must exist in the object.
type Metadata struct {
	// Name of the gadget.
	Name string `yaml:"name"`
	// Description of the gadget.
	Description string `yaml:"description"`
	// DataSources by name.
	DataSources map[string]DataSourceMetadata `yaml:"datasources"`
	// Params by key (the C variable's name).
	Params map[string]ParamMetadata `yaml:"params"`
}

// DataSourceMetadata annotates one data source.
type DataSourceMetadata struct {
	Description string                   `yaml:"description"`
	Fields      map[string]FieldMetadata `yaml:"fields"`
}

// FieldMetadata annotates one field.
type FieldMetadata struct {
	Description string `yaml:"description"`
	// Kind overrides the kind read from BTF, e.g. "stringlist" for a char
	// array of NUL-separated arguments.
	Kind string `yaml:"kind"`
	// Hidden fields are decoded but not printed.
	Hidden bool `yaml:"hidden"`
	// Annotations are free-form.
	Annotations map[string]string `yaml:"annotations"`
}

// ParamMetadata annotates one param.
type ParamMetadata struct {
	Description string `yaml:"description"`
}

// ParseMetadata reads gadget.yaml strictly: unknown keys are errors, so a
// misspelt "descripton" does not pass silently. Empty input is valid.
func ParseMetadata(b []byte) (*Metadata, error) {
	m := &Metadata{}
	if len(bytes.TrimSpace(b)) == 0 {
		return m, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(m); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse gadget.yaml: %w", err)
	}
	return m, nil
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
			f.Hidden = fm.Hidden
			f.Annotations = fm.Annotations
		}
	}
	for key, pm := range m.Params {
		p, ok := params[key]
		if !ok {
			return fmt.Errorf("gadget.yaml: params.%s: the object declares no such param (declare it with GADGET_PARAM)", key)
		}
		p.desc.Description = pm.Description
	}
	return nil
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
