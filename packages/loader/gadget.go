package loader

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"gopkg.in/yaml.v3"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
)

// Gadget is what gadget/gadget.yaml says of the gadget as a whole. The
// file's format is the gadget runtime's (pkg/gadget/ebpfstage.Metadata):
// the loader checks it exactly as a Trace's run will read it.
type Gadget struct {
	// Name of the gadget.
	Name string
	// Description in one line.
	Description string
}

// Program is what program.bpf.o holds, from its BTF.
type Program struct {
	// Maps by name, with their type (RingBuf, Hash, ...), sorted.
	Maps []NamedKind
	// Programs by function name, with their ELF section, sorted.
	Programs []NamedKind
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
	obj, err := os.ReadFile(filepath.Join(c.dir, filepath.FromSlash(GadgetProgram)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			c.add(GadgetProgram, 0, "missing: a gadget needs its eBPF object (compile with 'clang -g -O2 -target bpf')")
		} else {
			c.add(GadgetProgram, 0, "%v", err)
		}
		return
	}
	c.runtimeGadget(obj, raw)
}

func splitYAMLLine(s string) (int, string) {
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	return 0, s
}

// Marker prefixes of the gadget runtime (bpf/include/gadget/macros.h).
var markerPrefixes = []string{"gadget_tracer_", "gadget_snapshotter_", "gadget_param_"}

// hasMarkers reports whether spec declares a data source or param with
// the gadget runtime's marker symbols.
func hasMarkers(spec *ebpf.CollectionSpec) bool {
	for name := range spec.Variables {
		for _, p := range markerPrefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
	}
	return false
}

// metadataPathRE finds the key path a runtime error names in gadget.yaml
// ("gadget.yaml: datasources.exec.fields.ppid: ...").
var metadataPathRE = regexp.MustCompile(`gadget\.yaml: ((?:datasources|params)(?:\.[A-Za-z0-9_-]+)+)`)

// runtimeGadget checks the gadget as the gadget runtime reads it
// (pkg/gadget/ebpfstage), without loading anything into the kernel:
// gadget.yaml in the runtime's format, the object's BTF and marker
// declarations, and the catalog they make together.
func (c *checker) runtimeGadget(obj, raw []byte) {
	md, err := ebpfstage.ParseMetadata(raw)
	if err != nil {
		line, msg := splitYAMLLine(strings.TrimPrefix(err.Error(), "parse gadget.yaml: "))
		if m := regexp.MustCompile(`line (\d+): (.*)`).FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		if strings.HasPrefix(msg, "cannot unmarshal") || strings.Contains(msg, "did not find expected") || strings.Contains(msg, "found character") {
			msg = "not valid YAML: " + msg
		}
		c.add(GadgetYAML, line, "%s", friendlyType(strings.Replace(msg, "not found in type", "is not a known key of", 1)))
		return
	}
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
	if len(spec.Programs) == 0 {
		c.add(GadgetProgram, 0, "holds no eBPF program")
	}
	if !hasMarkers(spec) {
		c.add(GadgetProgram, 0, "declares no data source and no param: declare them with the gadget macros GADGET_TRACER, GADGET_SNAPSHOTTER and GADGET_PARAM (bpf/include/gadget/macros.h, docs/gadgets.md)")
		return
	}
	cat, err := ebpfstage.Catalog(obj, raw)
	if err != nil {
		msg := err.Error()
		file, line := GadgetProgram, 0
		if m := metadataPathRE.FindStringSubmatch(msg); m != nil {
			file = GadgetYAML
			var root yaml.Node
			if yaml.Unmarshal(raw, &root) == nil {
				line = nodeLine(&root, strings.Split(m[1], ".")...)
			}
			msg = strings.TrimPrefix(msg[strings.Index(msg, m[0]):], "gadget.yaml: ")
		} else if strings.Contains(msg, "gadget.yaml") {
			file = GadgetYAML
		}
		c.add(file, line, "%s", msg)
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
	prog := &Program{}
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

// friendlyType replaces Go type names in yaml.v3 messages.
func friendlyType(msg string) string {
	r := strings.NewReplacer("ebpfstage.Metadata", "the gadget", "ebpfstage.DataSourceMetadata", "a data source",
		"ebpfstage.FieldMetadata", "a field", "ebpfstage.ParamMetadata", "a param",
		"ebpfstage.igMetadata", "the gadget", "ebpfstage.igParams", "params (Inspektor Gadget's layout reads only params.ebpf)")
	return r.Replace(msg)
}

// nodeLine finds the line of a key path in a YAML document; the line of
// the deepest key found, 0 if none.
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
