package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/pkg/noderole/noderoletest"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver/streamservertest"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	testenv.Main(m, &env)
}

// gadgetpm-node refuses to run without a node name or with a bad log
// format, naming the flag.
func TestNodeBinaryRefusesBadFlags(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--node-name"},
		{[]string{"--node-name", "n", "--log-format", "xml"}, `--log-format "xml"`},
		{[]string{"--node-name", "n", "--debug-socket", "/tmp/sock/"}, "socket path /tmp/sock/ names a directory"},
		{[]string{"--node-name", "n", "--stream-max-clients", "0"}, "--stream-max-clients 0: want at least 1"},
		{[]string{"--node-name", "n", "--cache-gc-interval", "10ms"}, "--cache-gc-interval 10ms: want at least 1s"},
	} {
		var out bytes.Buffer
		cmd := newCommand(&out, &out, ctrl.SetLogger)
		cmd.SetArgs(append(tc.args, "--kubeconfig", env.WriteKubeconfig(t)))
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("gadgetpm-node %v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// nodeProc is gadgetpm-node's command running in the test.
type nodeProc struct {
	out    testlog.Buffer
	socket string
	cancel context.CancelFunc
	done   chan error
}

// startNode runs gadgetpm-node for node in namespace ns, its debug socket
// in a temporary directory.
func startNode(t *testing.T, ns, node string) *nodeProc {
	t.Helper()
	p := &nodeProc{socket: filepath.Join(t.TempDir(), "debug.sock"), done: make(chan error, 1)}
	cmd := newCommand(&p.out, &p.out, ctrl.SetLogger)
	cmd.SetArgs(append([]string{"--kubeconfig", env.WriteKubeconfig(t), "--node-name", node, "--node-check=false",
		"--namespaces", ns, "--data-dir", t.TempDir(), "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--stream-bind-address", "127.0.0.1:0",
		"--debug-socket", p.socket}, env.ShardArgs()...))
	var ctx context.Context
	ctx, p.cancel = context.WithCancel(context.Background())
	go func() { p.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		p.cancel()
		<-p.done
		p.done <- nil
	})
	return p
}

// stop ends the command and checks a clean stop: no error returned or
// logged, the debug socket removed.
func (p *nodeProc) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("gadgetpm-node after stop: %v\n%s", err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gadgetpm-node did not stop within 30s")
	}
	if strings.Contains(p.out.String(), `"level":"error"`) {
		t.Errorf("gadgetpm-node logged an error:\n%s", p.out.String())
	}
	if _, err := os.Lstat(p.socket); err == nil {
		t.Errorf("debug socket %s left behind after a clean stop", p.socket)
	}
}

// dump reads the node's dump through its debug socket, as `gadgetpm
// dump` does (GET /dump, YAML).
func (p *nodeProc) dump() (debugserver.Dump, string, error) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.socket)
		}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://gadgetpm/dump")
	if err != nil {
		return debugserver.Dump{}, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return debugserver.Dump{}, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return debugserver.Dump{}, "", fmt.Errorf("GET /dump: %s: %s", resp.Status, body)
	}
	var d debugserver.Dump
	if err := yaml.Unmarshal(body, &d); err != nil {
		return debugserver.Dump{}, "", fmt.Errorf("read the dump: %w\n%s", err, body)
	}
	return d, string(body), nil
}

// gadgetpm-node runs the node role: its node's Traces get its answer
// (here: their gadget names no package), its debug socket serves the
// node's dump naming the node, and it stops cleanly when its context
// ends.
func TestNodeBinaryRunsTheNodeRole(t *testing.T) {
	ns := env.Namespace(t)
	p := startNode(t, ns, "node-a")

	noderoletest.RequireAnswer(t, env.Client, ns, "node-a")
	d, body, err := p.dump()
	if err != nil {
		t.Fatalf("the node's dump: %v", err)
	}
	if d.Node != "node-a" || len(d.Packages) != 0 || len(d.Gadgets) != 0 {
		t.Errorf("the node's dump: want node node-a with no packages and no gadget runs, got:\n%s", body)
	}
	p.requireStreamAuth(t, ns)
	p.stop(t)
}

// requireStreamAuth finds the stream listener in the node's log and
// checks that it serves TLS and asks for a token: 401 without one, and
// with a reader's token the hub's answer (no run of the Trace).
func (p *nodeProc) requireStreamAuth(t *testing.T, ns string) {
	t.Helper()
	re := regexp.MustCompile(`"serving trace streams over TLS".*"address":"([^"]+)"`)
	addr := eventually.Value(t, 30*time.Second, "the stream listener's address in the log", func() (string, error) {
		m := re.FindStringSubmatch(p.out.String())
		if m == nil {
			return "", errors.New("not logged yet")
		}
		return m[1], nil
	})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the node's certificate is self-signed without --stream-cert-dir
	defer c.CloseIdleConnections()
	url := "https://" + addr + "/traces/" + ns + "/nothing"
	for _, tc := range []struct {
		token  string
		status int
	}{{"", http.StatusUnauthorized}, {streamservertest.Reader(t, env.Config, ns, "reader"), http.StatusNotFound}} {
		resp, err := streamservertest.Get(context.Background(), c, url, tc.token)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s (token %v): %s %q, want %d", url, tc.token != "", resp.Status, body, tc.status)
		}
	}
}

// The node's dump lists the gadget runs loaded on the node with the
// Traces they serve: gadgetpm-node downloads the package's installed
// archive and runs its eBPF program for a started Trace.
func TestNodeBinaryDumpsItsGadgetRuns(t *testing.T) {
	testroot.Require(t, "loading eBPF")
	ctx := context.Background()
	ns := env.Namespace(t)
	repo := t.TempDir()
	archive := filepath.Join(repo, "trace-exec-0.1.0.tgz")
	if err := chartrepo.Pack(filepath.Join(env.RepoRoot, "charts", "packages", "trace-exec"), "trace-exec", archive); err != nil {
		t.Fatal(err)
	}
	packagetest.WriteIndex(t, repo, packagetest.IndexEntry{Name: "trace-exec", Version: "0.1.0", URL: "trace-exec-0.1.0.tgz"})
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	pr := &gadgetpmv1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: gadgetpmv1alpha1.PackageRepositorySpec{URL: "file://" + repo, Interval: metav1.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, pr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
	// the status the cluster role writes once the package runs
	gp := &gadgetpmv1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "trace-exec"},
		Spec: gadgetpmv1alpha1.GadgetPackageSpec{Repository: pr.Name, Package: "trace-exec"}}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status = gadgetpmv1alpha1.GadgetPackageStatus{Phase: gadgetpmv1alpha1.PhaseRunning, Enabled: true, Version: "0.1.0", Digest: digest}
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}

	p := startNode(t, ns, "node-b")
	tr := &gadgetv1alpha1.Trace{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exec",
			Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: gadgetv1alpha1.OperationStart}},
		Spec: gadgetv1alpha1.TraceSpec{Node: "node-b", Gadget: "trace-exec", OutputMode: "Status"},
	}
	if err := env.Client.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 60*time.Second, "Trace "+ns+"/exec Started", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tr), tr); err != nil {
			return err
		}
		if tr.Status.State != gadgetv1alpha1.TraceStarted || tr.Status.OperationError != "" {
			return fmt.Errorf("state %q, operationError %q", tr.Status.State, tr.Status.OperationError)
		}
		return nil
	})
	want := ns + "/exec"
	body := eventually.Value(t, 10*time.Second, "the node's dump to list the run of "+want, func() (string, error) {
		d, body, err := p.dump()
		if err != nil {
			return "", err
		}
		for _, g := range d.Gadgets {
			if g.Package == ns+"/trace-exec" && slices.Contains(g.Traces, want) {
				return body, nil
			}
		}
		return "", fmt.Errorf("no run of package %s/trace-exec serving %s:\n%s", ns, want, body)
	})
	if !strings.HasPrefix(body, "node: node-b\n") {
		t.Errorf("the node's dump does not start with its node's name:\n%s", body)
	}
	p.stop(t)
}
