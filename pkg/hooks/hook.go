package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// HooksDir is the folder of a package that holds its hooks.
const HooksDir = "hooks"

// Hook is one executable of a package with its parsed config.
type Hook struct {
	// Name is the hook's path below the package's hooks/ folder, with
	// forward slashes ("10-sync.sh", "lib/check"). It is the hook label in
	// logs and metrics.
	Name string
	// Path is the executable's absolute path.
	Path string
	// Package is the package's name (its chart name); values live under
	// ValuesKey(Package).
	Package string
	// PackageKey identifies the package instance ("<namespace>.<name>");
	// it prefixes monitor IDs.
	PackageKey string
	// Dir is the package's root folder, the hook's working directory.
	Dir string
	// Config is the hook's parsed config.
	Config *Config
	// Timeout overrides the Runner's timeout for this hook when positive.
	Timeout time.Duration
	// Credentials, when set, replace RunnerOptions.Credentials in this
	// hook's runs: its package's own service account.
	Credentials Credentials
}

// ID is "<package key>/<hook name>", unique across packages.
func (h *Hook) ID() string { return h.PackageKey + "/" + h.Name }

// MonitorID is the ID of the kubeevents monitor for a kubernetes binding:
// "<package key>/<hook>/<binding>". A binding whose name another
// kubernetes binding of the hook shares passes "<binding>[<index>]".
func MonitorID(packageKey, hook, binding string) string {
	return packageKey + "/" + hook + "/" + binding
}

// Bindings lists the hook's bindings as "<type>" or "<type>:<name>", in a
// stable order, for status and dumps.
func (h *Hook) Bindings() []string {
	var out []string
	c := h.Config
	for _, o := range []struct {
		t BindingType
		p *float64
	}{{OnStartup, c.OnStartup}, {BeforeHelm, c.BeforeHelm}, {AfterHelm, c.AfterHelm}, {AfterDeleteHelm, c.AfterDeleteHelm}} {
		if o.p != nil {
			out = append(out, string(o.t))
		}
	}
	for _, b := range c.Schedules {
		out = append(out, string(Schedule)+":"+b.Name)
	}
	for _, b := range c.Kubernetes {
		out = append(out, string(Kubernetes)+":"+b.Name)
	}
	return out
}

// Discover lists the hooks of the package in dir: every executable regular
// file under dir/hooks, recursively, as paths relative to dir/hooks sorted
// by path. Non-executable files (libraries the hooks source) are skipped. A
// package without a hooks folder has no hooks.
func Discover(dir string) ([]string, error) {
	root := filepath.Join(dir, HooksDir)
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := os.Stat(path) // follows symlinks
		if err != nil {
			return fmt.Errorf("stat hook %s: %w", path, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("discover hooks in %s: %w", root, err)
	}
	sort.Strings(out)
	return out, nil
}

// LoadOptions configure Load.
type LoadOptions struct {
	// Package is the package's name (chart name). Required.
	Package string
	// PackageKey is "<namespace>.<name>" of the package instance. Required.
	PackageKey string
	// Env is passed to `hook --config` as to every run (see RunnerOptions).
	Env Env
	// Timeout bounds `hook --config`; default one minute.
	Timeout time.Duration
	// Mapper, when set, resolves every kubernetes binding's kind during
	// Load (see Config.ResolveKinds); nil leaves kinds as the hooks wrote
	// them.
	Mapper meta.RESTMapper
}

// Load runs `<hook> --config` for every hook name (as from Discover) of the
// package in dir, parses the output and assigns monitor IDs. It stops at the
// first hook that fails, naming it. Kinds are resolved separately
// (Config.ResolveKinds), since that needs the API server.
func Load(ctx context.Context, dir string, names []string, opts LoadOptions) ([]*Hook, error) {
	if opts.Package == "" || opts.PackageKey == "" {
		return nil, errors.New("load hooks: Package and PackageKey are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load hooks: %w", err)
	}
	hooks := make([]*Hook, 0, len(names))
	for _, name := range names {
		h := &Hook{Name: name, Path: filepath.Join(abs, HooksDir, filepath.FromSlash(name)), Package: opts.Package, PackageKey: opts.PackageKey, Dir: abs}
		out, err := h.printConfig(ctx, opts)
		if err != nil {
			return nil, err
		}
		if err := h.configure(out, opts); err != nil {
			return nil, err
		}
		hooks = append(hooks, h)
	}
	return hooks, nil
}

// FromConfig builds hook name of the package in dir from the output its
// `--config` already gave (as the package loader keeps it), without running
// it again: the config is parsed, kinds resolved when opts.Mapper is set,
// and monitor IDs assigned, as Load does.
func FromConfig(dir, name string, config []byte, opts LoadOptions) (*Hook, error) {
	if opts.Package == "" || opts.PackageKey == "" {
		return nil, errors.New("build hook: Package and PackageKey are required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build hook %s: %w", name, err)
	}
	h := &Hook{Name: name, Path: filepath.Join(abs, HooksDir, filepath.FromSlash(name)), Package: opts.Package, PackageKey: opts.PackageKey, Dir: abs}
	if err := h.configure(config, opts); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Hook) configure(out []byte, opts LoadOptions) error {
	cfg, err := ParseConfig(h.Name, out)
	if err != nil {
		return err
	}
	if opts.Mapper != nil {
		if err := cfg.ResolveKinds(h.Name, opts.Mapper); err != nil {
			return err
		}
	}
	count := map[string]int{}
	for _, b := range cfg.Kubernetes {
		count[b.Name]++
	}
	for i := range cfg.Kubernetes {
		name := cfg.Kubernetes[i].Name
		if count[name] > 1 {
			// Bindings sharing a name each keep their own monitor.
			name = fmt.Sprintf("%s[%d]", name, i)
		}
		cfg.Kubernetes[i].Monitor.ID = MonitorID(opts.PackageKey, h.Name, name)
	}
	h.Config = cfg
	return nil
}

func (h *Hook) printConfig(ctx context.Context, opts LoadOptions) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "gadgetpm-hook-config-")
	if err != nil {
		return nil, fmt.Errorf("run hook %s --config: %w", h.Name, err)
	}
	defer os.RemoveAll(tmp)
	var stdout, stderr bytes.Buffer
	cmd := command(ctx, h.Path, []string{"--config"}, h.Dir, opts.Env.build(tmp, nil), &stdout, &stderr)
	err = sandbox.Run(cmd)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("run hook %s --config: no answer within %s", h.Name, opts.Timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(tail(stderr.String(), 2048))
		if msg == "" {
			msg = "(no output on stderr)"
		}
		return nil, fmt.Errorf("run hook %s --config: %w: %s", h.Name, err, msg)
	}
	return stdout.Bytes(), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Ordered returns the hooks that declare binding t (onStartup, beforeHelm,
// afterHelm or afterDeleteHelm) in the order they run: ascending ORDER, then
// name. Other binding types have no ORDER and give nil.
func Ordered(hooks []*Hook, t BindingType) []*Hook {
	order := func(h *Hook) *float64 {
		switch t {
		case OnStartup:
			return h.Config.OnStartup
		case BeforeHelm:
			return h.Config.BeforeHelm
		case AfterHelm:
			return h.Config.AfterHelm
		case AfterDeleteHelm:
			return h.Config.AfterDeleteHelm
		}
		return nil
	}
	var out []*Hook
	for _, h := range hooks {
		if order(h) != nil {
			out = append(out, h)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		oi, oj := *order(out[i]), *order(out[j])
		if oi != oj {
			return oi < oj
		}
		return out[i].Name < out[j].Name
	})
	return out
}
