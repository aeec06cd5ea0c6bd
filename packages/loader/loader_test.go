package loader_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

var ctx = context.Background()

func TestLoadValidPackage(t *testing.T) {
	dir := packagetest.Write(t, t.TempDir(), packagetest.Source{
		Requires: "net-base >=1.2, <2, proc-base",
		Hooks: map[string]string{
			"20-watch/sync.sh": "#!/bin/sh\necho 'configVersion: v1\nkubernetes:\n- name: pods\n  apiVersion: v1\n  kind: Pod\n  queue: pods\nschedule:\n- crontab: \"*/5 * * * *\"\n  queue: cron\n'\n",
			"10-startup.sh":    packagetest.DefaultHook,
		},
		Files: map[string]string{"hooks/lib/common.sh": "x=1\n"},
	})
	p, err := loader.Load(ctx, dir, loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "execsnoop" || p.Version != "1.0.0" {
		t.Errorf("name/version = %s %s", p.Name, p.Version)
	}
	var hooks [][]string
	for _, h := range p.Hooks {
		hooks = append(hooks, append([]string{h.Name}, h.Bindings...))
	}
	wantHooks := [][]string{{"10-startup.sh", "onStartup"}, {"20-watch/sync.sh", "schedule:schedule", "kubernetes:pods"}}
	if !reflect.DeepEqual(hooks, wantHooks) {
		t.Errorf("hooks = %v, want %v (hooks sorted by path, bindings as pkg/hooks lists them, non-executable lib skipped)", hooks, wantHooks)
	}
	if q := p.Hooks[1].Queues; !reflect.DeepEqual(q, []string{"cron", "pods"}) {
		t.Errorf("custom queues = %v", q)
	}
	wantReq := loader.Requirements{Requires: []loader.Requirement{{Name: "net-base", Constraint: ">=1.2, <2"}, {Name: "proc-base", Constraint: "*"}}}
	if !reflect.DeepEqual(p.Requirements, wantReq) {
		t.Errorf("requirements = %+v, want %+v", p.Requirements, wantReq)
	}
	if p.Catalog == nil || len(p.Catalog.DataSources) != 1 {
		t.Fatalf("catalog = %+v", p.Catalog)
	}
	ds := p.Catalog.DataSources[0]
	if ds.Name != "events" || ds.Kind != "tracer" {
		t.Errorf("data source = %+v", ds)
	}
	fields := map[string]string{}
	for _, f := range ds.Fields {
		fields[f.Name] = f.Type
		if f.Name == "pid" && f.Description != "process id" {
			t.Errorf("pid description = %q", f.Description)
		}
	}
	wantFields := map[string]string{"timestamp": "uint64", "pid": "uint32", "uid": "uint32", "comm": "string"}
	if !reflect.DeepEqual(fields, wantFields) {
		t.Errorf("fields = %v, want %v", fields, wantFields)
	}
	if len(p.Catalog.Params) != 1 || p.Catalog.Params[0].Key != "targ_uid" || p.Catalog.Params[0].Type != "uint32" {
		t.Errorf("params = %+v", p.Catalog.Params)
	}
	if len(p.Program.Programs) != 1 || p.Program.Programs[0].Kind != "tracepoint/syscalls/sys_enter_execve" {
		t.Errorf("programs = %+v", p.Program.Programs)
	}
	for _, f := range p.Chart.Files {
		if strings.HasPrefix(f.Name, "gadget/") || strings.HasPrefix(f.Name, "hooks/") {
			t.Errorf("chart files keep %s; it must stay out of Helm release storage", f.Name)
		}
	}
}

func TestLoadReportsEveryBadInput(t *testing.T) {
	nobtf, err := os.ReadFile(packagetest.Testdata("bpf", "nobtf.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	nomarkers, err := os.ReadFile(packagetest.Testdata("bpf", "nomarkers.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  packagetest.Source
		// want is "<file>:<line>: <text>" or "<file>: <text>" expected
		// among the problems.
		want string
	}{
		{"no Chart.yaml", packagetest.Source{ChartYAML: packagetest.Omit}, "Chart.yaml: missing"},
		{"Chart.yaml without version", packagetest.Source{ChartYAML: "apiVersion: v2\nname: x\n"}, "Chart.yaml: load chart: validation: chart.metadata.version is required"},
		{"chart apiVersion v1", packagetest.Source{ChartYAML: "apiVersion: v1\nname: execsnoop\nversion: 1.0.0\n"}, "Chart.yaml:1: apiVersion is \"v1\""},
		{"schema not JSON", packagetest.Source{Schema: "{\n  \"type\": \"object\",\n  oops\n}"}, "values.schema.json:3: not valid JSON"},
		{"schema invalid", packagetest.Source{Schema: `{"type": "nonsense"}`}, "values.schema.json: invalid JSON schema"},
		{"schema not an object", packagetest.Source{Schema: `[1]`}, "values.schema.json:1: a JSON schema must be an object"},
		{"defaults fail schema", packagetest.Source{Values: "maxRows: 0\n"}, "values.yaml: the default values do not match values.schema.json"},
		{"gadget.yaml unknown key", packagetest.Source{Gadget: "name: x\ndescription: y\ncolour: blue\n"}, "gadget/gadget.yaml:3: field colour is not a known key of the gadget"},
		{"gadget.yaml nested unknown key", packagetest.Source{Gadget: "name: x\ndatasources:\n  events:\n    fields:\n      pid:\n        descripton: typo\n"}, "gadget/gadget.yaml:6: field descripton is not a known key of a field"},
		{"gadget.yaml not YAML", packagetest.Source{Gadget: "name: [x\n"}, "gadget/gadget.yaml:1: not valid YAML"},
		{"gadget.yaml in the old dataSources format", packagetest.Source{Gadget: "dataSources:\n  events: {}\n"}, "gadget/gadget.yaml:1: field dataSources is not a known key of the gadget"},
		{"gadget.yaml wrong field kind", packagetest.Source{Gadget: "datasources:\n  events:\n    fields:\n      pid: {kind: streamer}\n"}, "gadget/gadget.yaml:4: datasources.events.fields.pid.kind:"},
		{"gadget.yaml unknown data source", packagetest.Source{Gadget: "datasources:\n  nope: {}\n"}, "gadget/gadget.yaml:2: datasources.nope: the object declares no such data source"},
		{"gadget.yaml unknown field", packagetest.Source{Gadget: "datasources:\n  events:\n    fields:\n      ppid: {description: x}\n"}, "gadget/gadget.yaml:4: datasources.events.fields.ppid: the event struct has no such member"},
		{"gadget.yaml unknown param", packagetest.Source{Gadget: "params:\n  targ_pid: {description: x}\n"}, "gadget/gadget.yaml:2: params.targ_pid:"},
		{"gadget.yaml in Inspektor Gadget's layout, unknown param key", packagetest.Source{Gadget: "name: x\nparams:\n  ebpf:\n    targ_pid:\n      defaultVal: \"1\"\n"}, "gadget/gadget.yaml:5: field defaultVal is not a known key of a param"},
		{"gadget.yaml in Inspektor Gadget's layout, unknown params section", packagetest.Source{Gadget: "params:\n  ebpf:\n    targ_pid: {}\n  operator: {}\n"}, "gadget/gadget.yaml:4: field operator is not a known key of params (Inspektor Gadget's layout reads only params.ebpf)"},
		{"eBPF object without markers", packagetest.Source{Program: nomarkers}, "gadget/program.bpf.o: declares no data source and no param: declare them with the gadget macros"},
		{"eBPF object without BTF", packagetest.Source{Program: nobtf}, "gadget/program.bpf.o: no usable BTF"},
		{"eBPF object garbage", packagetest.Source{Program: []byte("not an ELF file")}, "gadget/program.bpf.o: not a valid eBPF object"},
		{"gadget.yaml without program", packagetest.Source{Program: []byte(packagetest.Omit)}, "gadget/program.bpf.o: missing"},
		{"program without gadget.yaml", packagetest.Source{Gadget: packagetest.Omit}, "gadget/gadget.yaml: missing"},
		{"hook --config hangs", packagetest.Source{Hooks: map[string]string{"hang.sh": "#!/bin/sh\nsleep 600 &\nsleep 600\n"}}, "hooks/hang.sh: --config did not finish within 500ms"},
		{"hook --config prints garbage", packagetest.Source{Hooks: map[string]string{"junk.sh": "#!/bin/sh\necho '}}}{{{ not yaml'\n"}}, "hooks/junk.sh: --config output: hook junk.sh: --config output is neither YAML nor JSON"},
		{"hook --config exits non-zero", packagetest.Source{Hooks: map[string]string{"fail.sh": "#!/bin/sh\necho 'cannot reach the API' >&2\nexit 3\n"}}, "hooks/fail.sh: --config exited with code 3: cannot reach the API"},
		{"hook --config prints nothing", packagetest.Source{Hooks: map[string]string{"mute.sh": "#!/bin/sh\n"}}, "hooks/mute.sh: --config output: empty"},
		{"hook config version", packagetest.Source{Hooks: map[string]string{"old.sh": "#!/bin/sh\necho '{\"configVersion\":\"v0\",\"onStartup\":1}'\n"}}, `hooks/old.sh: --config output: hook old.sh: field configVersion: unsupported version v0; expected "v1"`},
		{"hook config unknown binding", packagetest.Source{Hooks: map[string]string{"x.sh": "#!/bin/sh\necho '{\"configVersion\":\"v1\",\"onShutdown\":1}'\n"}}, "hooks/x.sh: --config output: hook x.sh: field onShutdown: unknown binding; expected one of onStartup"},
		{"hook schedule without crontab", packagetest.Source{Hooks: map[string]string{"x.sh": "#!/bin/sh\necho '{\"configVersion\":\"v1\",\"schedule\":[{\"name\":\"a\"}]}'\n"}}, `binding schedule[0] "a": field crontab: missing; expected a cron spec`},
		{"requires malformed", packagetest.Source{Requires: ">=1.0"}, "Chart.yaml:6: annotation gadgetpm.io/requires: \">=1.0\": want \"name constraint\" pairs"},
		{"requires bad constraint", packagetest.Source{Requires: "net-base >=banana"}, "annotation gadgetpm.io/requires: net-base: constraint \">=banana\""},
		{"requires itself", packagetest.Source{Requires: "execsnoop"}, "the package requires itself"},
		{"requires twice", packagetest.Source{Requires: "a, a ^1"}, "package a is listed twice"},
		{"kubeVersion bad", packagetest.Source{KubeVersion: "one-point-thirty"}, "Chart.yaml:5: kubeVersion \"one-point-thirty\" is not a semver constraint"},
		{"x-secret not a boolean", packagetest.Source{Schema: `{"type": "object", "properties": {"webhook": {"type": "object", "properties": {"url": {"type": "string", "x-secret": "yes"}}}}}`}, `values.schema.json: "x-secret" of property webhook.url is yes: expected true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := packagetest.Write(t, t.TempDir(), tt.src)
			_, err := loader.Load(ctx, dir, loader.Options{HookTimeout: 500 * time.Millisecond})
			var lerr *loader.Error
			if !errors.As(err, &lerr) {
				t.Fatalf("err = %v, want *loader.Error", err)
			}
			var got []string
			for _, p := range lerr.Problems {
				got = append(got, p.String())
			}
			found := false
			for _, g := range got {
				found = found || strings.Contains(g, tt.want)
			}
			if !found {
				t.Fatalf("problems:\n  %s\nwant one containing %q", strings.Join(got, "\n  "), tt.want)
			}
			if !strings.Contains(err.Error(), "load package ") {
				t.Errorf("error %q does not say which package", err)
			}
		})
	}
}

func TestHelmPackagedArchiveFindsHooksByShebang(t *testing.T) {
	dir := packagetest.Write(t, t.TempDir(), packagetest.Source{Files: map[string]string{"hooks/lib.sh": "x=1\n"}})
	// What 'helm package' does to modes.
	if err := os.Chmod(filepath.Join(dir, "hooks", "10-startup.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := loader.Load(ctx, dir, loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Hooks) != 1 || p.Hooks[0].Name != "10-startup.sh" {
		t.Errorf("hooks = %+v, want only 10-startup.sh", p.Hooks)
	}
}

func TestCheckArchive(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Gadget: "name: x\nbogus: 1\n"})
	_, problems := loader.Check(ctx, filepath.Join(out, "execsnoop-1.0.0.tgz"), loader.Options{})
	if len(problems) != 1 || problems[0].String() != "gadget/gadget.yaml:2: field bogus is not a known key of the gadget" {
		t.Fatalf("problems = %v", problems)
	}
	_, problems = loader.Check(ctx, filepath.Join(out, "index.yaml"), loader.Options{})
	if len(problems) != 1 || !strings.Contains(problems[0].String(), "index.yaml: extract archive: not a gzipped tar") {
		t.Fatalf("problems = %v", problems)
	}
}

// TestLoadReadsSecretValues: the properties a schema marks "x-secret":
// true, wherever they sit, become the paths the dump redacts.
func TestLoadReadsSecretValues(t *testing.T) {
	tests := []struct {
		name, schema string
		want         [][]string
	}{
		{"none", `{"type": "object", "properties": {"maxRows": {"type": "integer"}}}`, nil},
		{"nested properties", `{"type": "object", "properties": {
			"webhook": {"type": "object", "properties": {"url": {"type": "string", "x-secret": true}, "method": {"type": "string"}}},
			"dsn": {"type": "string", "x-secret": true},
			"debug": {"type": "boolean", "x-secret": false}}}`,
			[][]string{{"dsn"}, {"webhook", "url"}}},
		{"a whole object", `{"type": "object", "properties": {"tls": {"type": "object", "x-secret": true, "properties": {"key": {"type": "string", "x-secret": true}}}}}`,
			[][]string{{"tls"}}},
		{"list items and map values", `{"type": "object", "properties": {
			"sinks": {"type": "array", "items": {"type": "object", "properties": {"dsn": {"type": "string", "x-secret": true}}}},
			"keys": {"type": "object", "additionalProperties": {"type": "string", "x-secret": true}},
			"byHost": {"type": "object", "patternProperties": {"^h": {"type": "object", "properties": {"pin": {"type": "string", "x-secret": true}}}}}}}`,
			[][]string{{"byHost", loader.AnyKey, "pin"}, {"keys", loader.AnyKey}, {"sinks", loader.AnyKey, "dsn"}}},
		{"branches", `{"type": "object", "properties": {"auth": {"anyOf": [{"type": "string", "x-secret": true}, {"type": "null"}]}}}`,
			[][]string{{"auth"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := loader.Load(ctx, packagetest.Write(t, t.TempDir(), packagetest.Source{Schema: tt.schema, Values: "{}\n"}), loader.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.SecretValues, tt.want) {
				t.Fatalf("SecretValues = %q, want %q", p.SecretValues, tt.want)
			}
		})
	}
}

func TestValidateSettings(t *testing.T) {
	p, err := loader.Load(ctx, packagetest.Write(t, t.TempDir(), packagetest.Source{}), loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		settings map[string]any
		want     string
	}{
		{map[string]any{"ignoreFailed": true, "maxRows": 10}, ""},
		{nil, ""},
		{map[string]any{"maxRows": 0}, "maxRows"},
		{map[string]any{"ignoreFailed": "yes"}, "ignoreFailed"},
		{map[string]any{"colour": "blue"}, "colour"},
	}
	for _, tt := range tests {
		err := loader.ValidateSettings(p, tt.settings)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tt.settings, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "settings of execsnoop 1.0.0 do not match its values.schema.json") {
			t.Errorf("%v: err = %v, want one naming %q", tt.settings, err, tt.want)
		}
	}
}

func TestParseRequires(t *testing.T) {
	tests := []struct {
		in   string
		want []loader.Requirement
		err  string
	}{
		{"a", []loader.Requirement{{"a", "*"}}, ""},
		{"a ^1, b >=1.2 <2", []loader.Requirement{{"a", "^1"}, {"b", ">=1.2 <2"}}, ""},
		{"a >=1, <2, b", []loader.Requirement{{"a", ">=1, <2"}, {"b", "*"}}, ""},
		{"", nil, ""},
		{"A", nil, "want \"name constraint\" pairs"},
	}
	for _, tt := range tests {
		got, err := loader.ParseRequires(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v", tt.in, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// The bundled packages are built for the gadget runtime (marker symbols,
// its gadget.yaml format); the loader takes their catalog from it.
func TestBundledPackagesLoad(t *testing.T) {
	dirs, _ := filepath.Glob(packagetest.Testdata("..", "..", "charts", "packages", "*", "Chart.yaml"))
	if len(dirs) == 0 {
		t.Fatal("no bundled packages found under charts/packages")
	}
	for _, chart := range dirs {
		dir := filepath.Dir(chart)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			p, err := loader.Load(ctx, dir, loader.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Catalog == nil || len(p.Catalog.DataSources) == 0 || len(p.Catalog.DataSources[0].Fields) == 0 {
				t.Errorf("catalog = %+v", p.Catalog)
			}
		})
	}
	// A runtime-format gadget.yaml with a misspelt key is refused with its line.
	src := filepath.Join(packagetest.Testdata("..", "..", "charts", "packages", "trace-exec"))
	obj, err := os.ReadFile(filepath.Join(src, "gadget", "program.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	dir := packagetest.Write(t, t.TempDir(), packagetest.Source{Program: obj, Hooks: map[string]string{},
		Gadget: "name: trace-exec\ndatasources:\n  exec:\n    descripton: typo\n"})
	_, problems := loader.Check(ctx, dir, loader.Options{})
	if len(problems) != 1 || problems[0].File != "gadget/gadget.yaml" || problems[0].Line != 4 || !strings.Contains(problems[0].Message, "descripton") {
		t.Errorf("problems = %v", problems)
	}
}

func TestLoadByRelativePathRunsHooks(t *testing.T) {
	base := t.TempDir()
	dir := packagetest.Write(t, base, packagetest.Source{})
	t.Chdir(base)
	rel := filepath.Base(dir)
	p, err := loader.Load(ctx, rel, loader.Options{})
	if err != nil {
		t.Fatalf("load %s: %v", rel, err)
	}
	if len(p.Hooks) != 1 || len(p.Hooks[0].Bindings) == 0 {
		t.Errorf("hooks = %+v, want the default hook with its bindings", p.Hooks)
	}
}
