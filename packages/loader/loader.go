package loader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	helmchart "helm.sh/helm/v3/pkg/chart"
	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	helmchartutil "helm.sh/helm/v3/pkg/chartutil"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/igimage"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/dump"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// Well-known paths inside a package.
const (
	GadgetYAML    = "gadget/gadget.yaml"
	GadgetProgram = "gadget/program.bpf.o"
	SchemaFile    = "values.schema.json"
	ChartFile     = "Chart.yaml"
	HooksDir      = "hooks"
)

// DefaultHookTimeout bounds one `hook --config` run.
const DefaultHookTimeout = 10 * time.Second

// HookConfig checks a hook's --config output and says what it declares.
type HookConfig interface {
	Parse(hook string, config []byte) (HookInfo, error)
}

// HookInfo is what a hook's config declares.
type HookInfo struct {
	// Bindings as "<type>" or "<type>:<name>".
	Bindings []string
	// Queues are the custom queues its bindings name, sorted.
	Queues []string
}

// Options configure Load and Check. The zero value means defaults.
type Options struct {
	// HookTimeout bounds each `hook --config`. Default DefaultHookTimeout.
	HookTimeout time.Duration
	// HookConfig checks hook configs. Default: pkg/hooks' parser, the one
	// the operator runs hooks with.
	HookConfig HookConfig
	// Limits bound the extraction of a .tgz given to Check. Defaults as in
	// package archive.
	Limits archive.Limits
	// HookSandbox runs each `hook --config` as the operator runs hooks
	// (see pkg/hooks/sandbox); nil runs it as the caller's user.
	HookSandbox sandbox.Launcher
}

func (o *Options) setDefaults() {
	if o.HookTimeout <= 0 {
		o.HookTimeout = DefaultHookTimeout
	}
	if o.HookConfig == nil {
		o.HookConfig = protocolHookConfig{}
	}
}

// Problem is one thing wrong with a package.
type Problem struct {
	// File is the path inside the package ("Chart.yaml",
	// "gadget/gadget.yaml"); empty for the package as a whole.
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	// Message says what is wrong and what was expected.
	Message string
}

func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Message
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	default:
		return fmt.Sprintf("%s: %s", p.File, p.Message)
	}
}

// Error is returned by Load when a package has problems.
type Error struct {
	// Package is the package's name or path.
	Package  string
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("load package %s: %s", e.Package, strings.Join(parts, "; "))
}

// Hook is one executable under hooks/.
type Hook struct {
	// Name is the path below hooks/, e.g. "10-startup.sh".
	Name string
	// Path is the absolute path of the executable.
	Path string
	// Config is the raw --config output.
	Config []byte
	// Bindings as HookConfig listed them.
	Bindings []string
	// Queues are the custom queues its bindings name ("queue:" of
	// schedule and kubernetes bindings), sorted.
	Queues []string
}

// Requirement is a package another one needs.
type Requirement struct {
	// Name of the required package.
	Name string
	// Constraint on its version (semver, Helm's syntax).
	Constraint string
}

// Requirements is what a package asks of its environment; the scheduler
// decides whether it is met.
type Requirements struct {
	// KubeVersion is Chart.yaml's kubeVersion constraint, may be empty.
	KubeVersion string
	// Requires from the gadgetpm.io/requires annotation.
	Requires []Requirement
	// Order from the gadgetpm.io/order annotation; 0 when absent.
	Order int
}

// Package is a loaded package.
type Package struct {
	// Dir is the package root.
	Dir string
	// Name and Version from Chart.yaml.
	Name, Version string
	// Chart as Helm loaded it, with gadget/ removed from its files: the
	// eBPF object never goes into Helm release storage.
	Chart *helmchart.Chart
	// Gadget is gadget/gadget.yaml; nil when the package has no gadget/.
	Gadget *Gadget
	// Program is what program.bpf.o holds; nil without a gadget.
	Program *Program
	// Catalog is the gadget's data sources, fields and params.
	Catalog *v1alpha1.Catalog
	// Hooks, sorted by name.
	Hooks []Hook
	// Requirements from Chart.yaml.
	Requirements Requirements
	// Image is the Inspektor Gadget image the package was installed from
	// (packages/igimage); nil for a chart package. Such a package has no
	// chart of its own (Chart is an empty one, made from the image's
	// name and tag), no hooks and no settings schema.
	Image *igimage.Info
	// SecretValues are the paths into the values whose property
	// values.schema.json marks "x-secret": true, e.g. ["webhook", "url"];
	// a segment AnyKey stands for any key of a map or any item of a list.
	// The dump shows their values redacted.
	SecretValues [][]string
}

// AnyKey in a SecretValues path matches any key or list item: it stands
// for a schema's additionalProperties, patternProperties and items. The
// debug server redacts by the same wildcard, so it is the dump's.
const AnyKey = dump.AnyKey

// Load loads the package in dir, returning *Error when it has problems.
func Load(ctx context.Context, dir string, opts Options) (*Package, error) {
	p, problems := Check(ctx, dir, opts)
	if len(problems) > 0 {
		name := dir
		if p != nil && p.Name != "" {
			name = p.Name + " " + p.Version
		}
		if p != nil && p.Image != nil {
			name += " (image " + p.Image.Image + ")"
		}
		return nil, &Error{Package: name, Problems: problems}
	}
	return p, nil
}

// Check runs every check on the package at path (a directory or a .tgz)
// and returns what it could load with every problem found, in file order.
func Check(ctx context.Context, path string, opts Options) (*Package, []Problem) {
	opts.setDefaults()
	// Hooks run with the package as working directory: their paths must
	// not depend on the caller's.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, []Problem{{Message: err.Error()}}
	}
	if !fi.IsDir() {
		tmp, err := os.MkdirTemp("", "gadgetpm-lint-")
		if err != nil {
			return nil, []Problem{{Message: err.Error()}}
		}
		defer os.RemoveAll(tmp)
		f, err := os.Open(path)
		if err != nil {
			return nil, []Problem{{Message: err.Error()}}
		}
		defer f.Close()
		dir := filepath.Join(tmp, "pkg")
		limits := opts.Limits
		limits.StripComponents = 1
		if err := archive.Extract(ctx, f, dir, limits); err != nil {
			return nil, []Problem{{File: filepath.Base(path), Message: err.Error()}}
		}
		path = dir
	}
	c := &checker{dir: path, opts: opts, pkg: &Package{Dir: path}}
	c.run(ctx)
	sort.SliceStable(c.problems, func(i, j int) bool {
		a, b := c.problems[i], c.problems[j]
		if a.File != b.File {
			return fileRank(a.File) < fileRank(b.File)
		}
		return a.Line < b.Line
	})
	return c.pkg, c.problems
}

func fileRank(f string) string {
	switch {
	case f == ChartFile:
		return "0"
	case f == "values.yaml" || f == SchemaFile:
		return "1" + f
	case strings.HasPrefix(f, "gadget/"):
		return "2" + f
	case strings.HasPrefix(f, HooksDir+"/"):
		return "3" + f
	}
	return "4" + f
}

type checker struct {
	dir      string
	opts     Options
	pkg      *Package
	problems []Problem
}

func (c *checker) add(file string, line int, format string, args ...any) {
	c.problems = append(c.problems, Problem{File: file, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) run(ctx context.Context) {
	if info, ok, err := igimage.ReadInfo(c.dir); ok || err != nil {
		c.image(info, err)
		return
	}
	if _, err := os.Stat(filepath.Join(c.dir, ChartFile)); err != nil {
		c.add(ChartFile, 0, "missing: a package is a Helm chart and needs Chart.yaml (apiVersion v2, name, version)")
		return
	}
	ch, err := helmloader.LoadDir(c.dir)
	if err != nil {
		c.add(ChartFile, 0, "load chart: %v", err)
		return
	}
	c.pkg.Name, c.pkg.Version = ch.Metadata.Name, ch.Metadata.Version
	if err := ch.Validate(); err != nil {
		c.add(ChartFile, 0, "%v", err)
	}
	if ch.Metadata.APIVersion != helmchart.APIVersionV2 {
		c.add(ChartFile, lineOfKey(c.read(ChartFile), "apiVersion"), "apiVersion is %q: packages are charts of apiVersion v2", ch.Metadata.APIVersion)
	}
	c.requirements(ch)
	c.schema(ch)
	c.gadget()
	c.hooks(ctx)
	// The eBPF object and gadget metadata stay out of Helm release storage.
	files := ch.Files[:0:0]
	for _, f := range ch.Files {
		if !strings.HasPrefix(f.Name, "gadget/") && !strings.HasPrefix(f.Name, HooksDir+"/") {
			files = append(files, f)
		}
	}
	ch.Files = files
	c.pkg.Chart = ch
}

func (c *checker) read(rel string) []byte {
	b, _ := os.ReadFile(filepath.Join(c.dir, filepath.FromSlash(rel)))
	return b
}

func (c *checker) schema(ch *helmchart.Chart) {
	if len(ch.Schema) == 0 {
		return
	}
	var v any
	if err := json.Unmarshal(ch.Schema, &v); err != nil {
		line := 0
		if se, ok := err.(*json.SyntaxError); ok {
			line = 1 + bytes.Count(ch.Schema[:se.Offset], []byte("\n"))
		}
		c.add(SchemaFile, line, "not valid JSON: %v", err)
		return
	}
	if _, ok := v.(map[string]any); !ok {
		c.add(SchemaFile, 1, "a JSON schema must be an object, got %T", v)
		return
	}
	c.pkg.SecretValues = nil
	c.secrets(v, nil)
	// Compiles the schema and checks the chart's own defaults against it.
	if err := helmchartutil.ValidateAgainstSingleSchema(ch.Values, ch.Schema); err != nil {
		msg := strings.TrimSpace(err.Error())
		var verr helmchartutil.JSONSchemaValidationError
		if !errors.As(err, &verr) {
			c.add(SchemaFile, 0, "invalid JSON schema: %s", msg)
			return
		}
		c.add("values.yaml", 0, "the default values do not match values.schema.json: %s", msg)
	}
}

// secrets collects the paths of the properties that schema marks
// "x-secret": true. It follows properties, additionalProperties,
// patternProperties, items and the allOf/anyOf/oneOf branches; a $ref is
// not followed.
func (c *checker) secrets(schema any, path []string) {
	m, ok := schema.(map[string]any)
	if !ok {
		return
	}
	if x, ok := m["x-secret"]; ok {
		at := "the schema's root"
		if len(path) > 0 {
			at = "property " + strings.Join(path, ".")
		}
		switch x {
		case true:
			for _, have := range c.pkg.SecretValues {
				if slices.Equal(have, path) {
					return
				}
			}
			c.pkg.SecretValues = append(c.pkg.SecretValues, append([]string(nil), path...))
			return
		case false:
		default:
			c.add(SchemaFile, 0, `"x-secret" of %s is %v: expected true or false`, at, x)
		}
	}
	child := func(s any, key string) { c.secrets(s, append(append([]string(nil), path...), key)) }
	if props, ok := m["properties"].(map[string]any); ok {
		names := make([]string, 0, len(props))
		for name := range props {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			child(props[name], name)
		}
	}
	if pp, ok := m["patternProperties"].(map[string]any); ok {
		for _, s := range pp {
			child(s, AnyKey)
		}
	}
	child(m["additionalProperties"], AnyKey)
	switch items := m["items"].(type) {
	case map[string]any:
		child(items, AnyKey)
	case []any:
		for _, s := range items {
			child(s, AnyKey)
		}
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		branches, _ := m[k].([]any)
		for _, s := range branches {
			c.secrets(s, path)
		}
	}
}

// ValidateSettings checks settings (a GadgetPackage's spec.settings)
// merged over the chart's values against its values.schema.json.
func ValidateSettings(p *Package, settings map[string]any) error {
	if p.Chart == nil {
		return fmt.Errorf("validate settings of %s: the package is not loaded", p.Name)
	}
	vals, err := helmchartutil.CoalesceValues(p.Chart, settings)
	if err != nil {
		return fmt.Errorf("validate settings of %s: %w", p.Name, err)
	}
	if err := helmchartutil.ValidateAgainstSchema(p.Chart, vals); err != nil {
		return fmt.Errorf("settings of %s %s do not match its values.schema.json: %s", p.Name, p.Version, strings.TrimSpace(err.Error()))
	}
	return nil
}
