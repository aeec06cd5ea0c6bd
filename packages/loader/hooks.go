package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
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
		out, err := runConfig(ctx, c.dir, f.abs, c.opts.HookTimeout)
		if err != nil {
			c.add(HooksDir+"/"+f.rel, 0, "%v", err)
			continue
		}
		h.Config = out
		h.Bindings, err = c.opts.HookConfig.Bindings(f.rel, out)
		if err != nil {
			c.add(HooksDir+"/"+f.rel, 0, "--config output: %v", err)
			continue
		}
		h.Queues = customQueues(out)
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

// runConfig runs `hook --config` in its own process group, killed as a
// whole at the timeout.
func runConfig(ctx context.Context, dir, hook string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hook, "--config")
	cmd.Dir = dir
	cmd.Env = hookEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("--config did not finish within %s: it must print its config and exit", timeout)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("--config exited with code %d: %s", ee.ExitCode(), tail(stderr.String()))
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

// basicHookConfig checks the structure of a shell-operator hook config.
type basicHookConfig struct{}

var bindingKeys = map[string]bool{
	"onStartup": true, "schedule": true, "kubernetes": true,
	"beforeHelm": true, "afterHelm": true, "afterDeleteHelm": true, "settings": true,
}

func (basicHookConfig) Bindings(hook string, config []byte) ([]string, error) {
	if len(bytes.TrimSpace(config)) == 0 {
		return nil, errors.New("empty: a hook prints its config (YAML or JSON with configVersion: v1)")
	}
	var m map[string]any
	if err := yaml.Unmarshal(config, &m); err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %v (first bytes: %q)", err, first(config, 60))
	}
	if m == nil {
		return nil, fmt.Errorf("not a YAML or JSON object (first bytes: %q)", first(config, 60))
	}
	if v, _ := m["configVersion"].(string); v != "v1" {
		return nil, fmt.Errorf("configVersion is %v: want v1", m["configVersion"])
	}
	var out []string
	for _, k := range sortedKeys(m) {
		if k == "configVersion" {
			continue
		}
		if !bindingKeys[k] {
			return nil, fmt.Errorf("unknown key %q: want onStartup, schedule, kubernetes, beforeHelm, afterHelm, afterDeleteHelm or settings", k)
		}
		switch k {
		case "onStartup", "beforeHelm", "afterHelm", "afterDeleteHelm":
			if _, ok := m[k].(float64); !ok {
				return nil, fmt.Errorf("%s is %v: want an order number", k, m[k])
			}
			out = append(out, k)
		case "schedule", "kubernetes":
			list, ok := m[k].([]any)
			if !ok {
				return nil, fmt.Errorf("%s must be a list", k)
			}
			for i, item := range list {
				b, ok := item.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s[%d] must be an object", k, i)
				}
				if k == "schedule" {
					if s, _ := b["crontab"].(string); s == "" {
						return nil, fmt.Errorf("schedule[%d] has no crontab", i)
					}
				} else {
					if s, _ := b["kind"].(string); s == "" {
						return nil, fmt.Errorf("kubernetes[%d] has no kind", i)
					}
				}
				name, _ := b["name"].(string)
				if name == "" {
					name = fmt.Sprint(i)
				}
				out = append(out, k+":"+name)
			}
		}
	}
	return out, nil
}

func first(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// customQueues lists the "queue" names of a config's schedule and
// kubernetes bindings.
func customQueues(config []byte) []string {
	var m map[string]any
	if yaml.Unmarshal(config, &m) != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range []string{"schedule", "kubernetes"} {
		list, _ := m[k].([]any)
		for _, item := range list {
			b, _ := item.(map[string]any)
			if q, _ := b["queue"].(string); q != "" && !seen[q] {
				seen[q] = true
				out = append(out, q)
			}
		}
	}
	sort.Strings(out)
	return out
}
