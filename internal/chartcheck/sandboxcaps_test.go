package chartcheck_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// hookClientResult is what testdata/hookclient prints.
type hookClientResult struct {
	ExitCode    int    `json:"exitCode"`
	Err         string `json:"err"`
	ValuesPatch []struct {
		Value struct {
			UID  string `json:"uid"`
			PID1 string `json:"pid1"`
		} `json:"value"`
	} `json:"valuesPatch"`
}

// TestSandboxServerCapabilities runs the hook sandbox server (`gadgetpm
// hook-sandbox`) as the chart's hook-sandbox container does: as root with
// exactly the capabilities the chart adds and no others, its arguments
// from the rendered pod; and an operator's hook runner as the operator
// container's user (65532) sends it a hook through the socket, its run
// directory in a temporary directory both share. The hook runs as the
// hook user as PID 1's child in its own PID namespace, and its run
// directory comes back to the operator's user. Without any one of the
// capabilities it fails: each is needed, not just sufficient.
func TestSandboxServerCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the hook sandbox server runs as root with named capabilities: run the tests as root, as CI does")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv is not on PATH: apt-get install util-linux")
	}
	o := mustRender(t, "gadgetpm", nil)
	spec := o.deploy[0].Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].SecurityContext == nil || spec.InitContainers[0].SecurityContext.Capabilities == nil {
		t.Fatalf("the cluster role's pod has no hook-sandbox container with named capabilities: %+v", spec.InitContainers)
	}
	sidecar := spec.InitContainers[0]
	caps := sidecar.SecurityContext.Capabilities.Add
	operatorUID := fmt.Sprint(*spec.SecurityContext.RunAsUser)

	dir := t.TempDir()
	bin, client := filepath.Join(dir, "gadgetpm"), filepath.Join(dir, "hookclient")
	for out, pkg := range map[string]string{bin: "./cmd/gadgetpm", client: "./internal/chartcheck/testdata/hookclient"} {
		build := exec.Command("go", testenv.GoBuildArgs(out, pkg)...)
		build.Dir = env.RepoRoot
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	// The pod's shared emptyDirs: the socket's, the data directory with
	// an extracted package (world-readable, as the package store
	// extracts), and the temporary directory of the runs.
	root, err := os.MkdirTemp("", "gpmsandbox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	socketDir, tmp, pkg := filepath.Join(root, "socket"), filepath.Join(root, "tmp"), filepath.Join(root, "data", "pkg")
	hook := `#!/bin/bash
set -euo pipefail
if [ "${1:-}" = "--config" ]; then echo '{"configVersion":"v1","onStartup":1}'; exit 0; fi
echo "[{\"op\":\"add\",\"path\":\"/seen\",\"value\":{\"uid\":\"$(id -u)\",\"pid1\":\"$(tr '\0' ' ' </proc/1/cmdline)\"}}]" >"$VALUES_JSON_PATCH_PATH"
`
	for _, d := range []string{socketDir, tmp, filepath.Join(pkg, "hooks")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(pkg, "hooks", "10-whoami"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, filepath.Dir(pkg), tmp} {
		if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
	}
	socket := filepath.Join(socketDir, "sandbox.sock")

	// The sidecar's own arguments, the socket moved into this test's
	// directory.
	var serverArgs []string
	for _, a := range sidecar.Args {
		switch {
		case strings.HasPrefix(a, "--socket="):
			a = "--socket=" + socket
		case strings.HasPrefix(a, "--hide="):
			a = "--hide=" + socketDir
		}
		serverArgs = append(serverArgs, a)
	}
	if !slices.Contains(serverArgs, "--allow-uid="+operatorUID) {
		t.Fatalf("the sidecar's arguments %q do not allow the operator's uid %s", sidecar.Args, operatorUID)
	}

	runHook := func(t *testing.T, caps []corev1.Capability) (*hookClientResult, error) {
		_ = os.Remove(socket)
		srv := withCaps(caps, append([]string{bin}, serverArgs...)...)
		var srvErr bytes.Buffer
		srv.Stdout, srv.Stderr = &srvErr, &srvErr
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- srv.Wait() }()
		defer func() {
			_ = srv.Process.Kill()
			<-exited
		}()
		// The sidecar's startupProbe: the socket is there, or the server
		// gave up.
		var startErr error
		eventually.True(t, 30*time.Second, "the sandbox server's socket or its exit", func() bool {
			select {
			case err := <-exited:
				startErr = fmt.Errorf("the server exited (%v): %s", err, srvErr.String())
				exited <- err
				return true
			default:
			}
			fi, err := os.Stat(socket)
			return err == nil && fi.Mode()&os.ModeSocket != 0
		})
		if startErr != nil {
			return nil, startErr
		}
		cmd := exec.Command("setpriv", "--reuid="+operatorUID, "--regid="+operatorUID, "--clear-groups", client, socket, pkg, "10-whoami")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("hook client: %v: %s", err, stderr.String())
		}
		var res hookClientResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("hook client printed %q: %v", stdout.String(), err)
		}
		if res.Err != "" {
			return &res, errors.New(res.Err)
		}
		return &res, nil
	}

	res, err := runHook(t, caps)
	if err != nil {
		t.Fatalf("a hook through the sandbox server with the sidecar's capabilities %v: %v", caps, err)
	}
	if len(res.ValuesPatch) != 1 || res.ValuesPatch[0].Value.UID != "65534" || !strings.HasPrefix(res.ValuesPatch[0].Value.PID1, "gadgetpm-hook-sandbox") {
		t.Errorf("the hook reported %+v; want uid 65534 under the sandbox's init as PID 1", res.ValuesPatch)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("run directories left in %s: %v; the operator's user removes its own once the server gave them back", tmp, left)
	}
	// Why each is there (docs/install.md): namespaces and mounts, the
	// switch to the hook user's uid and groups, and the run directory
	// handed to the hook user and back through the runs' 0700 trees.
	for _, c := range caps {
		if _, err := runHook(t, without(caps, c)); err == nil {
			t.Errorf("a hook ran through the sandbox server without CAP_%s too (capabilities %v): the chart would not need it", c, without(caps, c))
		} else {
			t.Logf("without CAP_%s: %v", c, err)
		}
	}
}
