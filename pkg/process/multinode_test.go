package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// operatorProc is a real `gadgetpm operator` process of the test.
type operatorProc struct {
	name   string
	cmd    *exec.Cmd
	log    string // its stderr
	socket string // its debug socket
	exited chan error
}

// startOperator runs bin operator with args, its log in a file.
func startOperator(t *testing.T, bin, kubeconfig, name string, args ...string) *operatorProc {
	t.Helper()
	dir := t.TempDir()
	p := &operatorProc{name: name, log: filepath.Join(dir, "log"), socket: filepath.Join(dir, "debug.sock"), exited: make(chan error, 1)}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, append([]string{"operator", "--kubeconfig", kubeconfig, "--data-dir", filepath.Join(dir, "data"),
		"--debug-socket", p.socket, "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--stream-bind-address", "127.0.0.1:0",
		"--stop-grace", "2s"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exited <- p.cmd.Wait()
		_ = logf.Close()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("log of %s:\n%s", p.name, tail(string(b), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (p *operatorProc) logged(marker string) bool {
	b, _ := os.ReadFile(p.log)
	return strings.Contains(string(b), marker)
}

// terminate sends SIGTERM and checks a clean stop: exit 0, no error
// logged from then on (JSON entries at level error, or client-go's own
// E lines).
func (p *operatorProc) terminate(t *testing.T) {
	t.Helper()
	before, _ := os.ReadFile(p.log)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit 0", p.name, err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("%s did not stop within 60s of SIGTERM", p.name)
		return
	}
	b, _ := os.ReadFile(p.log)
	for _, l := range strings.Split(string(b[len(before):]), "\n") {
		if strings.Contains(l, `"level":"error"`) || strings.HasPrefix(l, "E1") || strings.HasPrefix(l, "E0") {
			t.Errorf("%s logged an error on a clean stop: %s", p.name, l)
		}
	}
}

// tracesInDump lists the Traces the process's dump shows loaded.
func tracesInDump(bin string, p *operatorProc) ([]string, error) {
	out, err := exec.Command(bin, "dump", "--socket", p.socket, "-o", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("dump of %s: %w", p.name, err)
	}
	var d struct {
		Node    string `json:"node"`
		Gadgets []struct {
			Traces []string `json:"traces"`
		} `json:"gadgets"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("dump of %s: %w", p.name, err)
	}
	var traces []string
	for _, g := range d.Gadgets {
		traces = append(traces, g.Traces...)
	}
	slices.Sort(traces)
	return traces, nil
}

// buildGadgetpm builds the gadgetpm binary for the test's processes.
func buildGadgetpm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gadgetpm")
	build := exec.Command("go", testenv.GoBuildArgs(bin, "./cmd/gadgetpm")...)
	build.Dir = env.RepoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// createNodes creates real Node objects: each node role leaves the other
// nodes' Traces alone (--node-check).
func createNodes(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		no := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := env.Client.Create(context.Background(), no); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), no) })
	}
}

// traceExecPackage creates a repository (named ns) holding trace-exec
// only and a GadgetPackage ns/trace-exec installing it.
func traceExecPackage(t *testing.T, ns string) *gadgetpmv1alpha1.GadgetPackage {
	t.Helper()
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "src")
	if err := os.CopyFS(filepath.Join(src, "trace-exec"), os.DirFS(filepath.Join(env.RepoRoot, "charts", "packages", "trace-exec"))); err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if _, err := chartrepo.Build(ctx, src, repo, chartrepo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &gadgetpmv1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: gadgetpmv1alpha1.PackageRepositorySpec{URL: "file://" + repo, Interval: metav1.Duration{Duration: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(ctx, &gadgetpmv1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	gp := &gadgetpmv1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trace-exec"},
		Spec: gadgetpmv1alpha1.GadgetPackageSpec{Repository: ns, Package: "trace-exec"}}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	return gp
}

// Three node-role processes and two cluster-role processes against one
// API server: each node runs its own Traces only, on a real gadget; the
// leader is killed with SIGKILL in the middle, the other takes the Lease
// over, the Traces keep running and a new Trace still starts; then every
// process stops cleanly on SIGTERM.
func TestMultiNode(t *testing.T) {
	testroot.Require(t, "loading eBPF")
	ctx := context.Background()
	bin := buildGadgetpm(t)
	kubeconfig := env.WriteKubeconfig(t)
	ns := env.Namespace(t)
	node := func(n string) string { return ns + "-node-" + n }
	// the Traces trace host processes
	if err := trace.AllowNodeWide(ctx, env.Client, ns); err != nil {
		t.Fatal(err)
	}
	createNodes(t, node("a"), node("b"), node("c"))
	gp := traceExecPackage(t, ns)

	common := append([]string{"--namespaces", ns, "--log-format", "json"}, env.ShardArgs()...)
	lease := []string{"--leader-election-namespace", ns, "--leader-election-lease-duration", "3s",
		"--leader-election-renew-deadline", "2s", "--leader-election-retry-period", "500ms"}
	clusters := []*operatorProc{
		startOperator(t, bin, kubeconfig, "cluster-1", append(append([]string{"--role", "cluster"}, common...), lease...)...),
		startOperator(t, bin, kubeconfig, "cluster-2", append(append([]string{"--role", "cluster"}, common...), lease...)...),
	}
	nodes := map[string]*operatorProc{}
	for _, n := range []string{"a", "b", "c"} {
		nodes[n] = startOperator(t, bin, kubeconfig, node(n), append([]string{"--role", "node", "--node-name", node(n)}, common...)...)
	}
	eventually.NoError(t, 120*time.Second, "trace-exec Running", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(gp), gp); err != nil {
			return err
		}
		if gp.Status.Phase != gadgetpmv1alpha1.PhaseRunning {
			return fmt.Errorf("phase %q", gp.Status.Phase)
		}
		return nil
	})

	startTrace := func(name, node string) {
		t.Helper()
		tr := &gadgetv1alpha1.Trace{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: "start"}},
			Spec: gadgetv1alpha1.TraceSpec{Node: node, Gadget: "trace-exec", OutputMode: "Status"},
		}
		if err := env.Client.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	// started waits for the Traces to be Started and to count events
	// (this test execs /bin/true while it waits).
	started := func(names ...string) {
		t.Helper()
		for _, name := range names {
			eventually.NoError(t, 60*time.Second, "Trace "+name+" Started with events", func() error {
				_ = exec.Command("/bin/true").Run()
				tr := &gadgetv1alpha1.Trace{}
				if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, tr); err != nil {
					return err
				}
				if tr.Status.State != gadgetv1alpha1.TraceStarted || tr.Status.EventCount == 0 || tr.Status.OperationError != "" {
					return fmt.Errorf("state %q, %d events, operationError %q", tr.Status.State, tr.Status.EventCount, tr.Status.OperationError)
				}
				return nil
			})
		}
	}
	// onlyOwn checks that each node's dump shows its own Traces and no
	// other node's.
	onlyOwn := func(want map[string][]string) {
		t.Helper()
		for n, p := range nodes {
			eventually.NoError(t, 30*time.Second, "the dump of node "+n, func() error {
				got, err := tracesInDump(bin, p)
				if err != nil {
					return err
				}
				if !slices.Equal(got, want[n]) {
					return fmt.Errorf("%s runs %v, want %v", n, got, want[n])
				}
				return nil
			})
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		startTrace("exec-"+n, node(n))
	}
	started("exec-a", "exec-b", "exec-c")
	onlyOwn(map[string][]string{"a": {ns + "/exec-a"}, "b": {ns + "/exec-b"}, "c": {ns + "/exec-c"}})

	// the leader dies; the other cluster role takes the Lease over
	leader := eventually.Value(t, 30*time.Second, "a leader", func() (int, error) {
		for i, c := range clusters {
			if c.logged(`"msg":"acquired the Lease`) {
				return i, nil
			}
		}
		return 0, errors.New("no cluster role acquired the Lease")
	})
	other := clusters[1-leader]
	if err := clusters[leader].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 60*time.Second, other.name+" to take the Lease over", func() bool {
		return other.logged(`"msg":"acquired the Lease`) && other.logged(`"msg":"coordinator started"`)
	})
	startTrace("exec-b2", node("b"))
	started("exec-a", "exec-b", "exec-c", "exec-b2")
	onlyOwn(map[string][]string{"a": {ns + "/exec-a"}, "b": {ns + "/exec-b", ns + "/exec-b2"}, "c": {ns + "/exec-c"}})
	for n, p := range nodes {
		if !p.logged(`"msg":"starting"`) || p.logged(`campaigning for the Lease`) {
			t.Errorf("node %s: want a node role that never campaigns for the Lease", n)
		}
	}

	// a clean stop of every process still running
	other.terminate(t)
	for _, p := range nodes {
		p.terminate(t)
	}
	if h, err := leaseHolder(ns); err != nil || h != "" {
		t.Errorf("Lease holder after SIGTERM %q (%v), want it released", h, err)
	}
}
