package loader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"gopkg.in/yaml.v3"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfoperator"
)

// Gadget is gadget/gadget.yaml. Unknown keys are errors.
type Gadget struct {
	// Name of the gadget.
	Name string `yaml:"name"`
	// Description in one line.
	Description string `yaml:"description"`
	// DataSources annotate the ring buffers of program.bpf.o, by map name.
	DataSources map[string]DataSource `yaml:"dataSources"`
	// Params annotate the program's constants (const volatile globals), by
	// variable name.
	Params map[string]Param `yaml:"params"`
}

// DataSource annotates one ring buffer.
type DataSource struct {
	// Kind is "tracer" (default) or "snapshotter".
	Kind string `yaml:"kind"`
	// Struct names the BTF struct of the events in the ring buffer.
	// Default: the struct named "event", when the object has one.
	Struct string `yaml:"struct"`
	// Fields annotate the struct's members, by member name.
	Fields map[string]Field `yaml:"fields"`
}

// Field annotates one member of an event struct.
type Field struct {
	Description string `yaml:"description"`
}

// Param annotates one constant of the program.
type Param struct {
	// Key is the parameter's name in a Trace's spec.parameters. Default:
	// the variable's name.
	Key string `yaml:"key"`
	// Default value, as a string.
	Default     string `yaml:"default"`
	Description string `yaml:"description"`
}

// Program is what program.bpf.o holds, from its BTF.
type Program struct {
	// Maps by name, with their type (RingBuf, Hash, ...), sorted.
	Maps []NamedKind
	// Programs by function name, with their ELF section, sorted.
	Programs []NamedKind
	// Structs are the event structs of the ring buffers, by ring buffer.
	Structs map[string]string
}

// NamedKind is a name and what it is.
type NamedKind struct{ Name, Kind string }

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (c *checker) gadget() {
	raw, err := os.ReadFile(filepath.Join(c.dir, filepath.FromSlash(GadgetYAML)))
	_, progErr := os.Stat(filepath.Join(c.dir, filepath.FromSlash(GadgetProgram)))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.add(GadgetYAML, 0, "%v", err)
		} else if progErr == nil {
			c.add(GadgetYAML, 0, "missing: %s needs its metadata file", GadgetProgram)
		}
		return
	}
	if obj, err := os.ReadFile(filepath.Join(c.dir, filepath.FromSlash(GadgetProgram))); err == nil && hasMarkers(obj) {
		c.runtimeGadget(obj, raw)
		return
	}
	var g Gadget
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&g); err != nil && err != io.EOF {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				line, msg := splitYAMLLine(e)
				msg = strings.Replace(msg, "not found in type", "is not a known key of", 1)
				c.add(GadgetYAML, line, "%s", friendlyType(msg))
			}
		} else {
			line, msg := splitYAMLLine(err.Error())
			c.add(GadgetYAML, line, "not valid YAML: %s", msg)
		}
		return
	}
	var root yaml.Node
	_ = yaml.Unmarshal(raw, &root)
	c.pkg.Gadget = &g
	for name, ds := range g.DataSources {
		if ds.Kind != "" && ds.Kind != "tracer" && ds.Kind != "snapshotter" {
			c.add(GadgetYAML, nodeLine(&root, "dataSources", name, "kind"), "dataSources.%s.kind is %q: want tracer or snapshotter", name, ds.Kind)
		}
	}
	for name, p := range g.Params {
		if p.Key != "" && !regexp.MustCompile(`^[a-z][a-z0-9-]*$`).MatchString(p.Key) {
			c.add(GadgetYAML, nodeLine(&root, "params", name, "key"), "params.%s.key %q: want lowercase letters, digits and dashes", name, p.Key)
		}
	}
	obj, err := os.ReadFile(filepath.Join(c.dir, filepath.FromSlash(GadgetProgram)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			c.add(GadgetProgram, 0, "missing: a gadget needs its eBPF object (compile with 'clang -g -O2 -target bpf')")
		} else {
			c.add(GadgetProgram, 0, "%v", err)
		}
		return
	}
	c.program(obj, &g, &root)
}

func splitYAMLLine(s string) (int, string) {
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	return 0, s
}

// friendlyType replaces Go type names in yaml.v3 messages.
func friendlyType(msg string) string {
	r := strings.NewReplacer("loader.Gadget", "the gadget", "loader.DataSource", "a data source",
		"loader.Field", "a field", "loader.Param", "a param")
	return r.Replace(msg)
}

// nodeLine finds the line of a key path in a YAML document; 0 if absent.
func nodeLine(root *yaml.Node, path ...string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

// lineOfKey finds the first line of raw YAML where key appears as a key.
func lineOfKey(raw []byte, key string) int {
	for i, l := range strings.Split(string(raw), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, key+":") || strings.HasPrefix(t, `"`+key+`":`) {
			return i + 1
		}
	}
	return 0
}

func (c *checker) program(obj []byte, g *Gadget, root *yaml.Node) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		if strings.Contains(err.Error(), "BTF") {
			c.add(GadgetProgram, 0, "no usable BTF (%v): compile with 'clang -g' so the object carries BTF", err)
		} else {
			c.add(GadgetProgram, 0, "not a valid eBPF object: %v", err)
		}
		return
	}
	if spec.Types == nil {
		c.add(GadgetProgram, 0, "no BTF: compile with 'clang -g' so the object carries BTF")
		return
	}
	prog := &Program{Structs: map[string]string{}}
	catalog := &v1alpha1.Catalog{}
	for name, m := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue // global data sections
		}
		prog.Maps = append(prog.Maps, NamedKind{name, m.Type.String()})
	}
	for name, p := range spec.Programs {
		prog.Programs = append(prog.Programs, NamedKind{name, p.SectionName})
	}
	sort.Slice(prog.Maps, func(i, j int) bool { return prog.Maps[i].Name < prog.Maps[j].Name })
	sort.Slice(prog.Programs, func(i, j int) bool { return prog.Programs[i].Name < prog.Programs[j].Name })
	if len(prog.Programs) == 0 {
		c.add(GadgetProgram, 0, "holds no eBPF program")
	}

	// Data sources: every ring buffer (or perf event array) of the object.
	for _, m := range prog.Maps {
		mt := spec.Maps[m.Name].Type
		if mt != ebpf.RingBuf && mt != ebpf.PerfEventArray {
			continue
		}
		ann := g.DataSources[m.Name]
		ds := v1alpha1.CatalogDataSource{Name: m.Name, Kind: ann.Kind}
		if ds.Kind == "" {
			ds.Kind = "tracer"
		}
		structName := ann.Struct
		if structName == "" {
			structName = "event"
		}
		var st *btf.Struct
		if err := spec.Types.TypeByName(structName, &st); err != nil {
			if ann.Struct != "" {
				c.add(GadgetYAML, nodeLine(root, "dataSources", m.Name, "struct"), "dataSources.%s.struct: %s has no struct %q", m.Name, GadgetProgram, ann.Struct)
			}
		} else {
			prog.Structs[m.Name] = structName
			members := map[string]bool{}
			for _, mem := range st.Members {
				members[mem.Name] = true
				ds.Fields = append(ds.Fields, v1alpha1.CatalogField{
					Name: mem.Name, Type: typeName(mem.Type), Description: ann.Fields[mem.Name].Description,
				})
			}
			for _, f := range sortedKeys(ann.Fields) {
				if !members[f] {
					c.add(GadgetYAML, nodeLine(root, "dataSources", m.Name, "fields", f), "dataSources.%s.fields.%s: struct %s has no member %q", m.Name, f, structName, f)
				}
			}
		}
		catalog.DataSources = append(catalog.DataSources, ds)
	}
	for _, name := range sortedKeys(g.DataSources) {
		if _, ok := prog.Structs[name]; ok {
			continue
		}
		if m, ok := spec.Maps[name]; !ok || (m.Type != ebpf.RingBuf && m.Type != ebpf.PerfEventArray) {
			c.add(GadgetYAML, nodeLine(root, "dataSources", name), "dataSources.%s: %s has no ring buffer named %q", name, GadgetProgram, name)
		}
	}

	// Params: the program's constants.
	consts := map[string]*ebpf.VariableSpec{}
	for name, v := range spec.Variables {
		if v.Constant() && !strings.HasPrefix(name, ".") {
			consts[name] = v
		}
	}
	for _, name := range sortedKeys(consts) {
		ann := g.Params[name]
		key := ann.Key
		if key == "" {
			key = name
		}
		t := ""
		if consts[name].Type != nil {
			t = typeName(consts[name].Type.Type)
		}
		catalog.Params = append(catalog.Params, v1alpha1.CatalogParam{Key: key, Type: t, Default: ann.Default, Description: ann.Description})
	}
	for _, name := range sortedKeys(g.Params) {
		if _, ok := consts[name]; !ok {
			c.add(GadgetYAML, nodeLine(root, "params", name), "params.%s: %s has no constant (const volatile global) named %q", name, GadgetProgram, name)
		}
	}
	c.pkg.Program = prog
	c.pkg.Catalog = catalog
}

// typeName describes a BTF type the way a catalog reader expects.
func typeName(t btf.Type) string {
	t = btf.UnderlyingType(t)
	switch v := t.(type) {
	case *btf.Int:
		if v.Encoding&btf.Bool != 0 {
			return "bool"
		}
		if v.Encoding&btf.Char != 0 && v.Size == 1 {
			return "char"
		}
		prefix := "uint"
		if v.Encoding&btf.Signed != 0 {
			prefix = "int"
		}
		return fmt.Sprintf("%s%d", prefix, v.Size*8)
	case *btf.Array:
		if it, ok := btf.UnderlyingType(v.Type).(*btf.Int); ok && it.Size == 1 {
			return "string"
		}
		return fmt.Sprintf("[%d]%s", v.Nelems, typeName(v.Type))
	case *btf.Enum:
		return "enum " + v.Name
	case *btf.Pointer:
		return "pointer"
	case *btf.Struct:
		return "struct " + v.Name
	case *btf.Union:
		return "union " + v.Name
	case nil:
		return "unknown"
	}
	return t.TypeName()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Marker prefixes of the gadget runtime (bpf/include/gadget/macros.h).
var markerPrefixes = []string{"gadget_tracer_", "gadget_snapshotter_", "gadget_param_"}

// hasMarkers reports whether obj declares its data sources and params
// with the gadget runtime's marker symbols.
func hasMarkers(obj []byte) bool {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return false
	}
	for name := range spec.Variables {
		for _, p := range markerPrefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
	}
	return false
}

// runtimeGadget checks a gadget built for the gadget runtime: gadget.yaml
// in the runtime's format, the catalog as the runtime reads it (without
// loading anything into the kernel).
func (c *checker) runtimeGadget(obj, raw []byte) {
	md, err := ebpfoperator.ParseMetadata(raw)
	if err != nil {
		line, msg := splitYAMLLine(strings.TrimPrefix(err.Error(), "parse gadget.yaml: "))
		if m := regexp.MustCompile(`line (\d+): (.*)`).FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		c.add(GadgetYAML, line, "%s", strings.Replace(msg, "not found in type", "is not a known key of", 1))
		return
	}
	cat, err := ebpfoperator.Catalog(obj, raw)
	if err != nil {
		msg := err.Error()
		file := GadgetProgram
		if strings.Contains(msg, "gadget.yaml") {
			file = GadgetYAML
		}
		c.add(file, 0, "%s", msg)
		return
	}
	b, err := json.Marshal(cat)
	var out v1alpha1.Catalog
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		c.add(GadgetProgram, 0, "convert catalog: %v", err)
		return
	}
	c.pkg.Gadget = &Gadget{Name: md.Name, Description: md.Description}
	c.pkg.Catalog = &out
	if spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj)); err == nil {
		prog := &Program{Structs: map[string]string{}}
		for name, m := range spec.Maps {
			if !strings.HasPrefix(name, ".") {
				prog.Maps = append(prog.Maps, NamedKind{name, m.Type.String()})
			}
		}
		for name, p := range spec.Programs {
			prog.Programs = append(prog.Programs, NamedKind{name, p.SectionName})
		}
		sort.Slice(prog.Maps, func(i, j int) bool { return prog.Maps[i].Name < prog.Maps[j].Name })
		sort.Slice(prog.Programs, func(i, j int) bool { return prog.Programs[i].Name < prog.Programs[j].Name })
		c.pkg.Program = prog
	}
}
