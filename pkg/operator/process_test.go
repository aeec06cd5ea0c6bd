package operator_test

import (
	"bytes"
	"context"
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
	out  *bytes.Buffer
	done chan error
}

func startProcess(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	p := &process{out: &bytes.Buffer{}, done: make(chan error, 1)}
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
		"--debug-socket", "-", "--metrics-bind-address", "0", "--namespaces", ns}

	first := startProcess(t, bin, append(common, "--helm-qps", "5", "--helm-burst", "5", "--health-probe-bind-address", "0")...)
	for deadline := time.Now().Add(90 * time.Second); !pendingRelease(t, ns); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the release never went pending within 90s")
		}
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	if !pendingRelease(t, ns) {
		t.Fatal("the killed operator left no pending release: the test did not kill it mid-upgrade")
	}

	probe := freePort(t)
	second := startProcess(t, bin, append(common, "--health-probe-bind-address", probe,
		"--leader-elect", "--leader-election-namespace", ns)...)
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
