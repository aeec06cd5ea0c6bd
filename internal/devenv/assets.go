package devenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gadgetpm/gadgetpm/internal/toolcache"
)

// repoModule is the module path whose go.mod marks a gadgetpm checkout.
const repoModule = "module github.com/gadgetpm/gadgetpm"

// FindRoot returns the gadgetpm checkout that holds dir (or dir itself),
// found by its go.mod.
func FindRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find gadgetpm checkout: %w", err)
	}
	for d := abs; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if strings.TrimSpace(first) == repoModule {
				return d, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find gadgetpm checkout: no gadgetpm go.mod in %s or above it; run from inside a checkout or pass its path with --root", abs)
		}
	}
}

// checkAssets returns nil when dir holds executable kube-apiserver and etcd.
func checkAssets(dir string) error {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("control plane binaries in %s: %w", dir, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("control plane binaries in %s: %s is not an executable file", dir, p)
		}
	}
	return nil
}

// cachedAssets returns the newest complete version directory in the tool
// cache rooted at cache (internal/toolcache), or "" when there is none.
func cachedAssets(cache string) string {
	return toolcache.Newest(cache, func(d string) bool { return checkAssets(d) == nil })
}

// runSetupEnvtest runs hack/setup-envtest.sh, streaming its progress (its
// stderr) to progress, and returns the directory it prints last.
func runSetupEnvtest(ctx context.Context, root string, progress io.Writer) (string, error) {
	script := filepath.Join(root, "hack", "setup-envtest.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("build control plane binaries: %w", err)
	}
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = root
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(progress, "      %s\n", sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	_ = pw.Close()
	<-copied
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("build control plane binaries: %w", ctx.Err())
		}
		return "", fmt.Errorf("build control plane binaries with %s: %w (see its output above; fix it and run again, or pass --assets)", script, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if dir == "" {
		return "", errors.New("build control plane binaries: hack/setup-envtest.sh printed no directory")
	}
	if err := checkAssets(dir); err != nil {
		return "", fmt.Errorf("build control plane binaries: %w", err)
	}
	return dir, nil
}
