package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// buildBinary builds gadgetpm once per test.
func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gadgetpm")
	cmd := exec.Command("go", testenv.GoBuildArgs(bin, "./cmd/gadgetpm")...)
	cmd.Dir = env.RepoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type process struct {
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan error
}

func startProcess(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	hookAccount(t)
	p := &process{out: &testlog.Buffer{}, done: make(chan error, 1)}
	if len(args) > 0 && args[0] == "operator" {
		// this test binary's objects only, on a shared control plane
		args = append(args, env.ShardArgs()...)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("operator output:\n%s", p.out.String())
		}
	})
	return p
}

// pendingRelease reports whether the namespace holds a Helm release
// Secret in a pending state.
func pendingRelease(t *testing.T, ns string) bool {
	t.Helper()
	var list corev1.SecretList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{"owner": "helm"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if strings.HasPrefix(s.Labels["status"], "pending") {
			return true
		}
	}
	return false
}

func TestProcessKilledDuringHelmUpgradeConvergesAfterRestart(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	// 300 objects applied at 5 QPS leave the release pending for a minute:
	// time enough to kill the operator in the middle.
	bulk := "{{ range $i := until 300 }}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bulk-{{ $i }}\ndata:\n  i: {{ $i | quote }}\n{{ end }}\n"
	repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "bulk", Files: map[string]string{"templates/bulk.yaml": bulk}})
	createRepo(t, "proc-"+ns, repoDir)
	createPackage(t, ns, "bulk", "proc-"+ns)
	bin := buildBinary(t)
	kc := env.WriteKubeconfig(t)
	dataDir := t.TempDir()
	common := []string{"operator", "--kubeconfig", kc, "--node-name", "test-node", "--data-dir", dataDir,
		"--debug-socket", "-", "--metrics-bind-address", "0", "--stream-bind-address", "127.0.0.1:0", "--namespaces", ns, "--leader-election-namespace", ns}

	first := startProcess(t, bin, append(common, "--helm-qps", "5", "--helm-burst", "5", "--health-probe-bind-address", "0", "--leader-elect=false")...)
	eventually.True(t, 90*time.Second, "the release to go pending", func() bool { return pendingRelease(t, ns) })
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	if !pendingRelease(t, ns) {
		t.Fatal("the killed operator left no pending release: the test did not kill it mid-upgrade")
	}

	probe := freePort(t)
	second := startProcess(t, bin, append(common, "--health-probe-bind-address", probe,
		"--leader-elect")...)
	gp := waitFor(t, ns, "bulk", "Running", running)
	if pendingRelease(t, ns) {
		t.Error("a release is still pending after the restart converged")
	}
	if gp.Status.HelmRevision < 2 {
		t.Errorf("revision %d: the pending release was not unlocked and retried", gp.Status.HelmRevision)
	}
	var cm corev1.ConfigMap
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "bulk-299"}, &cm); err != nil {
		t.Errorf("the last object of the release: %v", err)
	}
	var lease coordinationv1.Lease
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "gadgetpm-leader"}, &lease); err != nil {
		t.Errorf("leader Lease: %v", err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(fmt.Sprintf("http://%s%s", probe, path))
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", path, resp.StatusCode)
		}
	}

	// SIGTERM stops it in order and exits 0.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second.done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("no exit within 45s of SIGTERM")
	}
	if !strings.Contains(second.out.String(), `"service":"queues"`) {
		t.Errorf("the log does not show the queues stopping:\n%s", second.out.String())
	}
}

// TestProcessLogsHookOutput runs the operator binary in each log format
// and finds the line a hook printed in its log, with the package, hook,
// binding, queue, run ID and stream.
func TestProcessLogsHookOutput(t *testing.T) {
	bin := buildBinary(t)
	kc := env.WriteKubeconfig(t)
	const said = "hello from the talk hook"
	talk := "#!/bin/sh\nif [ \"$1\" = --config ]; then echo '{\"configVersion\":\"v1\",\"onStartup\":1}'; exit 0; fi\necho '" + said + "'\n"
	for _, tc := range []struct {
		format string
		// fields finds the hook's line and returns its fields.
		fields func(line string) (map[string]any, bool)
	}{
		{"json", func(line string) (map[string]any, bool) {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != said {
				return nil, false
			}
			return m, true
		}},
		{"text", func(line string) (map[string]any, bool) {
			// time, level, logger, message, then the fields as JSON.
			i := strings.Index(line, "\t"+said+"\t{")
			if i < 0 {
				return nil, false
			}
			var m map[string]any
			if json.Unmarshal([]byte(line[i+len(said)+2:]), &m) != nil {
				return nil, false
			}
			m["level"] = strings.Fields(line)[1]
			return m, true
		}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			ns := env.Namespace(t)
			dir := t.TempDir()
			repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "talker", Hooks: map[string]string{"10-talk.sh": talk}})
			createRepo(t, "talk-"+ns, repoDir)
			createPackage(t, ns, "talker", "talk-"+ns)
			p := startProcess(t, bin, "operator", "--kubeconfig", kc, "--node-name", "test-node", "--data-dir", t.TempDir(),
				"--debug-socket", "-", "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--stream-bind-address", "127.0.0.1:0", "--namespaces", ns,
				"--leader-election-namespace", ns, "--log-format", tc.format)
			waitFor(t, ns, "talker", "Running", running)
			got := eventually.Value(t, 30*time.Second, fmt.Sprintf("log line %q in the %s log", said, tc.format), func() (map[string]any, error) {
				for _, l := range strings.Split(p.out.String(), "\n") {
					if m, ok := tc.fields(l); ok {
						return m, nil
					}
				}
				return nil, fmt.Errorf("log:\n%s", p.out.String())
			})
			for k, want := range map[string]any{"package": ns + ".talker", "hook": "10-talk.sh", "binding": "onStartup",
				"queue": ns + ".talker", "output": "stdout", "level": "info"} {
				if got[k] != want {
					t.Errorf("%s=%v, want %v in %v", k, got[k], want, got)
				}
			}
			if id, _ := got["runID"].(string); len(id) != 8 {
				t.Errorf("runID %v in %v", got["runID"], got)
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-p.done:
				if err != nil {
					t.Errorf("exit after SIGTERM: %v", err)
				}
			case <-time.After(45 * time.Second):
				t.Fatal("no exit within 45s of SIGTERM")
			}
		})
	}
}
