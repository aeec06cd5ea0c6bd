package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHookSandboxFlags: the sandbox flags' defaults are in --help, and a
// bad value stops the operator before it does anything, naming the flag
// and what it expects.
func TestHookSandboxFlags(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	// Never reached: the flags are checked first.
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	operator := []string{"operator", "--kubeconfig", kubeconfig, "--node-name", "n", "--debug-socket", "-", "--data-dir", t.TempDir(), "--metrics-bind-address", "0", "--health-probe-bind-address", "0"}
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantErr bool
	}{
		{"operator help", []string{"operator", "--help"}, []string{"--hook-sandbox on|off|auto", "(default on)", "CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID", "--hook-user UID:GID", "(default 65534:65534)", "--hook-sandbox-socket"}, false},
		{"sandbox server help", []string{"hook-sandbox", "--help"}, []string{"--socket", "--allow-uid", "--hook-user UID:GID", "SO_PEERCRED", "without the operator's"}, false},
		{"sandbox server without socket", []string{"hook-sandbox"}, []string{`required flag(s) "socket" not set`}, true},
		{"unreachable sandbox server", append(operator, "--hook-sandbox-socket", filepath.Join(t.TempDir(), "none.sock")), []string{"hook sandbox server", "none.sock", "start `gadgetpm hook-sandbox --socket"}, true},
		{"dev help", []string{"dev", "--help"}, []string{"--hook-sandbox on|off|auto", "(default auto)", "--hook-user UID:GID"}, false},
		{"bad mode", append(operator, "--hook-sandbox", "yes"), []string{`invalid argument "yes" for "--hook-sandbox"`, "want on, off or auto"}, true},
		{"bad user", append(operator, "--hook-user", "nobody"), []string{`invalid argument "nobody" for "--hook-user"`, "want UID:GID"}, true},
		{"root user", append(operator, "--hook-user", "0:0"), []string{`invalid argument "0:0" for "--hook-user"`, "non-root user and group", "turn the hook sandbox off"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.args...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want one: %v\n%s", err, tc.wantErr, out)
			}
			if err != nil {
				out = err.Error()
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q lacks %q", out, w)
				}
			}
		})
	}
}
