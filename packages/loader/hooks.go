package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// maxHookOutput caps what a hook's --config may print.
const maxHookOutput = 1 << 20

// hookEnv is the whole environment of a --config run: nothing of the
// operator's leaks into a package's code.
var hookEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}

func (c *checker) hooks(ctx context.Context) {
	root := filepath.Join(c.dir, HooksDir)
	if _, err := os.Stat(root); err != nil {
		return
	}
	type file struct {
		rel, abs string
		exec     bool
		shebang  bool
	}
	var files []file
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		head := make([]byte, 2)
		if f, err := os.Open(p); err == nil {
			_, _ = f.Read(head)
			f.Close()
		}
		files = append(files, file{rel: filepath.ToSlash(rel), abs: p, exec: fi.Mode()&0o111 != 0, shebang: string(head) == "#!"})
		return nil
	})
	if err != nil {
		c.add(HooksDir, 0, "list hooks: %v", err)
		return
	}
	anyExec := false
	for _, f := range files {
		anyExec = anyExec || f.exec
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	for _, f := range files {
		// 'helm package' drops file modes: in an archive with no
		// executable hook at all, scripts with a shebang are the hooks.
		if !f.exec && (anyExec || !f.shebang) {
			continue
		}
		if !f.exec {
			if err := os.Chmod(f.abs, 0o755); err != nil {
				c.add(HooksDir+"/"+f.rel, 0, "make executable: %v", err)
				continue
			}
		}
		h := Hook{Name: f.rel, Path: f.abs}
		out, err := runConfig(ctx, c.opts.HookSandbox, c.dir, f.abs, c.opts.HookTimeout)
		if err != nil {
			c.add(HooksDir+"/"+f.rel, 0, "%v", err)
			continue
		}
		h.Config = out
		info, err := c.opts.HookConfig.Parse(f.rel, out)
		if err != nil {
			c.add(HooksDir+"/"+f.rel, 0, "--config output: %v", err)
			continue
		}
		h.Bindings, h.Queues = info.Bindings, info.Queues
		c.pkg.Hooks = append(c.pkg.Hooks, h)
	}
}

type cappedBuffer struct {
	bytes.Buffer
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxHookOutput {
		b.over = true
		p = p[:max(0, maxHookOutput-b.Len())]
	}
	b.Buffer.Write(p)
	return len(p), nil
}

// runConfig runs `hook --config` as a hook run: in its own process group
// (in sb's sandbox when sb is set, with a run directory of its own as
// TMPDIR), killed as a whole at the timeout and when the operator dies.
func runConfig(ctx context.Context, sb sandbox.Launcher, dir, hook string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr cappedBuffer
	c := sandbox.Cmd{Path: hook, Args: []string{"--config"}, Dir: dir, Env: hookEnv, Stdout: &stdout, Stderr: &stderr, Package: dir, WaitDelay: time.Second}
	if sb != nil {
		run, err := os.MkdirTemp("", "gadgetpm-hook-config-")
		if err != nil {
			return nil, fmt.Errorf("run --config: %w", err)
		}
		defer os.RemoveAll(run)
		c.RunDir, c.Hide = run, []string{os.TempDir()}
		c.Env = append(slices.Clip(hookEnv), "TMPDIR="+run)
	} else {
		sb = (*sandbox.Sandbox)(nil)
	}
	code, err := sb.Launch(ctx, c)
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("--config did not finish within %s: it must print its config and exit", timeout)
	}
	if err != nil {
		var start *sandbox.StartError
		if code >= 0 && !errors.As(err, &start) {
			return nil, fmt.Errorf("--config exited with code %d: %s", code, tail(stderr.String()))
		}
		return nil, fmt.Errorf("run --config: %v", err)
	}
	if stdout.over {
		return nil, fmt.Errorf("--config printed more than %d bytes", maxHookOutput)
	}
	return stdout.Bytes(), nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(no output on stderr)"
	}
	if len(s) > 500 {
		s = "…" + s[len(s)-500:]
	}
	return s
}

// protocolHookConfig checks a config with pkg/hooks, the same parser the
// operator runs hooks with, so lint and install agree on what is valid.
type protocolHookConfig struct{}

func (protocolHookConfig) Parse(hook string, config []byte) (HookInfo, error) {
	if len(bytes.TrimSpace(config)) == 0 {
		return HookInfo{}, errors.New("empty: a hook prints its config (YAML or JSON with configVersion: v1)")
	}
	cfg, err := hooks.ParseConfig(hook, config)
	if err != nil {
		return HookInfo{}, err
	}
	info := HookInfo{Bindings: (&hooks.Hook{Name: hook, Config: cfg}).Bindings()}
	seen := map[string]bool{}
	add := func(q string) {
		if q != "" && !seen[q] {
			seen[q] = true
			info.Queues = append(info.Queues, q)
		}
	}
	for _, b := range cfg.Schedules {
		add(b.Queue)
	}
	for _, b := range cfg.Kubernetes {
		add(b.Queue)
	}
	sort.Strings(info.Queues)
	return info, nil
}

func first(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
