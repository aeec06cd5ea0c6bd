package loader_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// TestHookConfigRunsSandboxed: `hook --config` of a package being loaded
// is third-party code too; with a sandbox it runs as the hook user and
// cannot change the package it is read from.
func TestHookConfigRunsSandboxed(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the hook sandbox needs root (CI runs as root)")
		}
		t.Skip("the hook sandbox needs root (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID)")
	}
	store := t.TempDir()
	sb, err := sandbox.New(ctx, sandbox.Options{Mode: sandbox.On, Hide: []string{store}})
	if err != nil {
		t.Fatal(err)
	}
	hook := "#!/bin/sh\n" +
		"if [ \"$1\" = --config ]; then\n" +
		"  touch \"$PWD/hooks/touched\" 2>/dev/null && echo '# wrote into its package'\n" +
		"  echo \"# uid $(id -u)\"\n" +
		"  echo 'configVersion: v1'\n  echo 'onStartup: 1'\n" +
		"fi\n"
	dir := packagetest.Write(t, filepath.Join(store, "pkg"), packagetest.Source{Hooks: map[string]string{"10-startup.sh": hook}})
	if err := os.Chmod(filepath.Join(dir, "hooks"), 0o777); err != nil { // writable by anyone: only the sandbox stops the hook
		t.Fatal(err)
	}
	p, err := loader.Load(ctx, dir, loader.Options{HookSandbox: sb})
	if err != nil {
		t.Fatal(err)
	}
	config := string(p.Hooks[0].Config)
	if !strings.Contains(config, "# uid 65534") || strings.Contains(config, "wrote into its package") {
		t.Errorf("--config printed %q, want it run as uid 65534 and unable to write into its package", config)
	}
	if _, err := os.Stat(filepath.Join(dir, "hooks", "touched")); err == nil {
		t.Error("--config created a file in its package")
	}
}
