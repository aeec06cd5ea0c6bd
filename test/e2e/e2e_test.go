//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"gopkg.in/yaml.v3"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"

	poll "github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
)

const (
	release   = "gadgetpm"
	opNS      = "gadgetpm-system"
	pkgNS     = "gadget"
	hooksNS   = "e2e-hooks"
	workNS    = "e2e-work"
	podLabel  = "app.kubernetes.io/name=gadgetpm"
	leaseName = "gadgetpm-leader"
	// The chart's two workloads, their pods told apart by this label.
	clusterLabel = podLabel + ",app.kubernetes.io/component=cluster"
	nodeLabel    = podLabel + ",app.kubernetes.io/component=node"
	// clusterReplicas is the chart's default cluster.replicas.
	clusterReplicas = 2
	hooksAccount    = "gadgetpm-hooks"
)

// env is what make e2e (hack/e2e-cluster.sh run) hands the tests.
type env struct {
	root, kubectl, helm, kubeconfig, node, nodeIP, image, dataDir string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	e := &env{
		root:       filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")),
		kubectl:    os.Getenv("E2E_KUBECTL"),
		helm:       os.Getenv("E2E_HELM"),
		kubeconfig: os.Getenv("KUBECONFIG"),
		node:       os.Getenv("E2E_NODE"),
		nodeIP:     os.Getenv("E2E_NODE_IP"),
		image:      os.Getenv("E2E_IMAGE"),
		dataDir:    os.Getenv("E2E_DATA_DIR"),
	}
	var missing []string
	for name, v := range map[string]string{"E2E_KUBECTL": e.kubectl, "E2E_HELM": e.helm, "KUBECONFIG": e.kubeconfig,
		"E2E_NODE": e.node, "E2E_NODE_IP": e.nodeIP, "E2E_IMAGE": e.image, "E2E_DATA_DIR": e.dataDir} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Fatalf("%s not set: the end-to-end tests run inside the cluster of hack/e2e-cluster.sh; run them with 'make e2e'", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end tests read the host's /proc and BPF programs: run 'make e2e' as root")
	}
	return e
}

func (e *env) run(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (e *env) kc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.run(ctx, nil, e.kubectl, args...)
}

func (e *env) mustKC(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.kc(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) apply(t *testing.T, manifest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.run(ctx, []byte(manifest), e.kubectl, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\nmanifest:\n%s", err, manifest)
	}
}

func (e *env) getJSON(t *testing.T, into any, args ...string) {
	t.Helper()
	out := e.mustKC(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
}

// eventually polls cond until it returns true or the time is up; the
// failure names what was awaited and the last state cond reported.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	poll.NoError(t, timeout, what, func() error {
		if ok, state := cond(); !ok {
			return fmt.Errorf("last seen: %s", state)
		}
		return nil
	})
}

// TestEndToEnd installs the chart and walks through what a user does, in
// order: each step needs the ones before it.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	t.Cleanup(func() { e.cleanup(t) })

	repoURL := e.serveRepository(t)
	e.helmInstall(t)

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"WorkloadsReadyLeaderAndDump", e.operatorReady},
		{"NodeRoleAndHooksReadNoSecrets", e.rbacInCluster},
		{"PackagesRunningHooksInCluster", func(t *testing.T) { e.packagesRunning(t, repoURL) }},
		{"TraceExecEnrichedFromRuntime", e.traceExec},
		{"StreamOnlyToAllowedReaders", e.streamAuthenticated},
		{"ScheduledTraceOnTime", e.scheduledTrace},
		{"UninstallStopsInOrderLeavesNothing", e.uninstall},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.fn) {
			t.Fatalf("%s failed; the later steps need it", s.name)
		}
	}
}

func (e *env) helmInstall(t *testing.T) {
	t.Helper()
	repoName, tag, ok := strings.Cut(e.image, ":")
	if !ok {
		t.Fatalf("E2E_IMAGE %q: want repository:tag", e.image)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := e.run(ctx, nil, e.helm, "install", release, filepath.Join(e.root, "charts", "gadgetpm"),
		"--namespace", opNS, "--create-namespace",
		"--set", "image.repository="+repoName, "--set", "image.tag="+tag, "--set", "image.pullPolicy=Never",
		"--set", "node.dataDir.hostPath="+e.dataDir,
		"--wait", "--timeout", "5m")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install --wait took %s", time.Since(start).Round(time.Second))
}

// --- 1. the operator's pods, leader election, dump --------------------------------

// operatorPods returns the chart's pods matching the label selector:
// podLabel for both roles', clusterLabel or nodeLabel for one role's.
func (e *env) operatorPods(t *testing.T, selector string) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	e.getJSON(t, &pods, "-n", opNS, "get", "pods", "-l", selector)
	return pods.Items
}

// leaseHolder returns the name of the pod holding the leader Lease, ""
// when none does: controller-runtime's identity is "<hostname>_<uuid>" and
// a pod's hostname is its name.
func (e *env) leaseHolder(t *testing.T) string {
	t.Helper()
	if _, err := e.kc("-n", opNS, "get", "lease", leaseName); err != nil {
		return ""
	}
	var lease coordinationv1.Lease
	e.getJSON(t, &lease, "-n", opNS, "get", "lease", leaseName)
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	name, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	return name
}

// dump runs gadgetpm dump in pod and parses its YAML.
func (e *env) dump(t *testing.T, pod string) (map[string]any, string) {
	t.Helper()
	out := e.mustKC(t, "-n", opNS, "exec", pod, "-c", "operator", "--", "gadgetpm", "dump")
	var dump map[string]any
	if err := yaml.Unmarshal([]byte(out), &dump); err != nil {
		t.Fatalf("gadgetpm dump in %s did not print YAML: %v\n%s", pod, err, out)
	}
	return dump, out
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// operatorReady: the cluster role's replicas and the node role's pod are
// Ready, a cluster-role pod holds the Lease, and gadgetpm dump answers in
// both roles' pods.
func (e *env) operatorReady(t *testing.T) {
	var cluster []corev1.Pod
	eventually(t, 3*time.Minute, fmt.Sprintf("%d Ready cluster-role pods", clusterReplicas), func() (bool, string) {
		cluster = e.operatorPods(t, clusterLabel)
		ready := 0
		var states []string
		for _, p := range cluster {
			if podReady(p) {
				ready++
			}
			states = append(states, fmt.Sprintf("%s %s ready %v", p.Name, p.Status.Phase, podReady(p)))
		}
		return len(cluster) == clusterReplicas && ready == clusterReplicas, strings.Join(states, "; ")
	})
	var node corev1.Pod
	eventually(t, 3*time.Minute, "one Ready node-role pod on node "+e.node, func() (bool, string) {
		pods := e.operatorPods(t, nodeLabel)
		if len(pods) != 1 {
			return false, fmt.Sprintf("%d node-role pods", len(pods))
		}
		node = pods[0]
		return podReady(node) && node.Spec.NodeName == e.node, fmt.Sprintf("pod %s on %q, phase %s, ready %v", node.Name, node.Spec.NodeName, node.Status.Phase, podReady(node))
	})

	var holder string
	eventually(t, time.Minute, "Lease "+opNS+"/"+leaseName+" held by a cluster-role pod", func() (bool, string) {
		holder = e.leaseHolder(t)
		return slices.ContainsFunc(cluster, func(p corev1.Pod) bool { return p.Name == holder }), "holder " + holder
	})
	if holder == node.Name {
		t.Errorf("the node-role pod %s holds the Lease", node.Name)
	}

	if dump, out := e.dump(t, holder); dump["packages"] == nil && dump["queues"] == nil {
		t.Errorf("gadgetpm dump in the Lease holder %s shows neither packages nor queues:\n%s", holder, out)
	}
	dump, out := e.dump(t, node.Name)
	if got := findKey(dump, "node"); got != e.node {
		t.Errorf("gadgetpm dump in node-role pod %s: node is %q, want %q\n%s", node.Name, got, e.node, out)
	}
	t.Logf("cluster-role pods %d Ready, Lease held by %s; node-role pod %s Ready on %s", len(cluster), holder, node.Name, node.Spec.NodeName)
}

// canI asks the cluster's authorizer, through kubectl auth can-i as the
// ServiceAccount sa of the release namespace; args are kubectl's (verb,
// resource, scope flags).
func (e *env) canI(t *testing.T, sa string, args ...string) bool {
	t.Helper()
	argv := append([]string{"auth", "can-i", "--as=system:serviceaccount:" + opNS + ":" + sa}, args...)
	out, err := e.kc(argv...)
	answer := strings.TrimSpace(out)
	if answer != "yes" && answer != "no" {
		t.Fatalf("kubectl %s: %q, %v", strings.Join(argv, " "), answer, err)
	}
	return answer == "yes"
}

// rbacInCluster: the node role's and the hooks' accounts may read no
// Secret, in the real cluster as in internal/chartcheck; the node role
// may write its Traces' status (so the names are right and the answers
// are the authorizer's).
func (e *env) rbacInCluster(t *testing.T) {
	nodeSA := release + "-node"
	if !e.canI(t, nodeSA, "patch", "traces.gadget.kinvolk.io", "--subresource=status", "-n", pkgNS) {
		t.Errorf("%s may not patch traces/status", nodeSA)
	}
	// the reviews of stream readers' tokens and access
	for _, r := range []string{"tokenreviews.authentication.k8s.io", "subjectaccessreviews.authorization.k8s.io"} {
		if !e.canI(t, nodeSA, "create", r) {
			t.Errorf("%s may not create %s", nodeSA, r)
		}
	}
	for _, c := range []struct {
		sa   string
		args []string
	}{
		{nodeSA, []string{"get", "secrets", "-A"}},
		{nodeSA, []string{"list", "secrets", "-n", opNS}},
		{hooksAccount, []string{"list", "secrets", "-A"}},
		{hooksAccount, []string{"create", "serviceaccounts", "--subresource=token", "-n", opNS}},
	} {
		if e.canI(t, c.sa, c.args...) {
			t.Errorf("%s may %s", c.sa, strings.Join(c.args, " "))
		}
	}
}

// findKey returns the first string value under key, searching maps and
// lists depth first.
func findKey(v any, key string) string {
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v[key].(string); ok {
			return s
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if s := findKey(v[k], key); s != "" {
				return s
			}
		}
	case []any:
		for _, x := range v {
			if s := findKey(x, key); s != "" {
				return s
			}
		}
	}
	return ""
}

// --- 2. repository, packages, hooks in cluster ------------------------------------

// serveRepository packs hook-demo, trace-exec and the e2e-incluster test
// package into a chart repository and serves it over HTTP on the node's
// bridge address, where the operator's pod reaches it.
func (e *env) serveRepository(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	for name, dir := range map[string]string{
		"hook-demo":     filepath.Join(e.root, "charts", "packages", "hook-demo"),
		"trace-exec":    filepath.Join(e.root, "charts", "packages", "trace-exec"),
		"e2e-incluster": filepath.Join(e.root, "test", "e2e", "testdata", "e2e-incluster"),
	} {
		if err := os.CopyFS(filepath.Join(src, name), os.DirFS(dir)); err != nil {
			t.Fatalf("copying package %s: %v", name, err)
		}
	}
	out := t.TempDir()
	if _, err := chartrepo.Build(context.Background(), src, out, chartrepo.BuildOptions{}); err != nil {
		t.Fatalf("building the e2e repository: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(e.nodeIP, "0"))
	if err != nil {
		t.Fatalf("listening on the node's bridge address %s: %v", e.nodeIP, err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(out)), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String() + "/"
}

func (e *env) packagesRunning(t *testing.T, repoURL string) {
	for _, ns := range []string{pkgNS, hooksNS, workNS} {
		e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns))
	}
	// The Traces live in pkgNS and trace workNS's pod and the host: a
	// cluster admin allows that with the label (docs/install.md).
	e.mustKC(t, "label", "namespace", pkgNS, "gadgetpm.io/privileged-traces=true", "--overwrite")
	e.apply(t, fmt.Sprintf(`apiVersion: gadgetpm.io/v1alpha1
kind: PackageRepository
metadata:
  name: e2e
spec:
  url: %s
  insecure: true
  interval: 1m
`, repoURL))
	for _, name := range []string{"trace-exec", "hook-demo", "e2e-incluster"} {
		e.apply(t, fmt.Sprintf(`apiVersion: gadgetpm.io/v1alpha1
kind: GadgetPackage
metadata:
  name: %s
  namespace: %s
spec:
  repository: e2e
  package: %s
`, name, pkgNS, name))
	}
	for _, name := range []string{"trace-exec", "hook-demo", "e2e-incluster"} {
		eventually(t, 4*time.Minute, "GadgetPackage "+pkgNS+"/"+name+" Running", func() (bool, string) {
			var p gadgetpmv1alpha1.GadgetPackage
			e.getJSON(t, &p, "-n", pkgNS, "get", "gadgetpackage", name)
			b, _ := json.Marshal(p.Status)
			return p.Status.Phase == gadgetpmv1alpha1.PhaseRunning, string(b)
		})
	}

	// hook-demo's kubernetes hook sees a labelled ConfigMap and records it
	// through an object patch.
	e.apply(t, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-input
  namespace: %s
  labels:
    gadgetpm.io/demo: "true"
data:
  k: v
`, hooksNS))
	eventually(t, 2*time.Minute, "hook-demo's record "+hooksNS+"/hook-demo-seen naming demo-input", func() (bool, string) {
		var cm corev1.ConfigMap
		if _, err := e.kc("-n", hooksNS, "get", "configmap", "hook-demo-seen"); err != nil {
			return false, err.Error()
		}
		e.getJSON(t, &cm, "-n", hooksNS, "get", "configmap", "hook-demo-seen")
		return strings.Contains(cm.Data["objects"], "demo-input"), fmt.Sprintf("%v", cm.Data)
	})

	// e2e-incluster's hook ran kubectl inside the cluster role's pod with
	// the credentials of the hooks' own account: a kubeconfig file, and
	// none of the pod's in-cluster environment.
	var cm corev1.ConfigMap
	eventually(t, time.Minute, "e2e-incluster's ConfigMap "+hooksNS+"/e2e-incluster", func() (bool, string) {
		_, err := e.kc("-n", hooksNS, "get", "configmap", "e2e-incluster")
		return err == nil, fmt.Sprint(err)
	})
	e.getJSON(t, &cm, "-n", hooksNS, "get", "configmap", "e2e-incluster")
	want := map[string]string{
		"serviceHost":   "",
		"servicePort":   "",
		"user":          "system:serviceaccount:" + opNS + ":" + hooksAccount,
		"serverVersion": e.serverVersion(t),
	}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("the hook's ConfigMap: %s = %q, want %q (all: %v)", k, cm.Data[k], v, cm.Data)
		}
	}
	if cm.Data["kubeconfig"] == "" {
		t.Errorf("the hook ran without KUBECONFIG: its credentials are not its own (all: %v)", cm.Data)
	}
	t.Logf("the in-cluster hook wrote %v", cm.Data)
	e.hookSandboxed(t, cm.Data)
}

// hookSandboxed: e2e-incluster's hook ran in the hook sandbox of the
// chart's hook-sandbox container, as a user relies on it: it could not
// read the cluster role's service-account token, saw in the operator's
// package store its own package's directory only and no archive, ran as
// the hook user (hooks.user, 65534) and under the sandbox's init as PID 1,
// in a PID namespace of its own.
func (e *env) hookSandboxed(t *testing.T, seen map[string]string) {
	t.Helper()
	if seen["token"] == "readable" {
		t.Errorf("the hook read the pod's service-account token (all: %v)", seen)
	}
	own := strings.Fields(seen["packages"])
	if len(own) != 1 || !strings.HasPrefix(seen["ownDir"]+"/", "/var/lib/gadgetpm/packages/packages/"+own[0]+"/") {
		t.Errorf("the hook in %s saw the packages %q in the operator's store; want its own only (all: %v)", seen["ownDir"], seen["packages"], seen)
	}
	if seen["archives"] != "" {
		t.Errorf("the hook saw the operator's package archives %q (all: %v)", seen["archives"], seen)
	}
	if seen["uid"] != "65534" {
		t.Errorf("the hook ran as uid %q, want the hook user 65534 (all: %v)", seen["uid"], seen)
	}
	if !strings.HasPrefix(seen["pid1"], "gadgetpm-hook-sandbox") {
		t.Errorf("the hook's PID 1 is %q, want the sandbox's init (gadgetpm-hook-sandbox) in a PID namespace of its own (all: %v)", seen["pid1"], seen)
	}
	// The container the hooks run in has no token at all: only the
	// operator's container mounts it.
	holder := e.leaseHolder(t)
	if out, err := e.kc("-n", opNS, "exec", holder, "-c", "hook-sandbox", "--", "ls", "-A", "/var/run/secrets/kubernetes.io/serviceaccount"); err == nil {
		t.Errorf("pod %s's hook-sandbox container holds a service-account directory: %q", holder, out)
	}
	if _, err := e.kc("-n", opNS, "exec", holder, "-c", "operator", "--", "test", "-s", "/var/run/secrets/kubernetes.io/serviceaccount/token"); err != nil {
		t.Errorf("pod %s's operator container has no token of its own: %v", holder, err)
	}
	// The sandbox works with what the chart grants and no more: the
	// server's capabilities are the five the chart adds (CHOWN,
	// DAC_OVERRIDE, SETGID, SETUID, SYS_ADMIN), under the runtime's
	// default seccomp filter; the operator has none.
	for _, c := range []struct{ container, capEff string }{{"hook-sandbox", "00000000002000c3"}, {"operator", "0000000000000000"}} {
		status := e.mustKC(t, "-n", opNS, "exec", holder, "-c", c.container, "--", "cat", "/proc/1/status")
		fields := map[string]string{}
		for _, line := range strings.Split(status, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		if fields["CapEff"] != c.capEff || fields["Seccomp"] != "2" {
			t.Errorf("pod %s's %s container runs with CapEff %s and Seccomp %s; want %s under a seccomp filter (2)", holder, c.container, fields["CapEff"], fields["Seccomp"], c.capEff)
		}
	}
}

func (e *env) serverVersion(t *testing.T) string {
	t.Helper()
	var v struct {
		ServerVersion struct {
			GitVersion string `json:"gitVersion"`
		} `json:"serverVersion"`
	}
	out := e.mustKC(t, "version", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl version: %v", err)
	}
	return v.ServerVersion.GitVersion
}

// --- 3. trace-exec in a workload container ---------------------------------------------

func (e *env) trace(t *testing.T, name string) gadgetv1alpha1.Trace {
	t.Helper()
	var tr gadgetv1alpha1.Trace
	e.getJSON(t, &tr, "-n", pkgNS, "get", "trace", name)
	return tr
}

func (e *env) annotate(t *testing.T, trace, op string) {
	t.Helper()
	e.mustKC(t, "annotate", "-n", pkgNS, "trace/"+trace, "gadget.kinvolk.io/operation="+op, "--overwrite")
}

func (e *env) waitState(t *testing.T, trace string, state gadgetv1alpha1.TraceState) gadgetv1alpha1.Trace {
	t.Helper()
	var tr gadgetv1alpha1.Trace
	eventually(t, 2*time.Minute, "Trace "+trace+" "+string(state), func() (bool, string) {
		tr = e.trace(t, trace)
		_, pending := tr.Annotations["gadget.kinvolk.io/operation"]
		return tr.Status.State == state && !pending, fmt.Sprintf("state %q, error %q, warning %q, annotation pending %v",
			tr.Status.State, tr.Status.OperationError, tr.Status.OperationWarning, pending)
	})
	return tr
}

func (e *env) traceExec(t *testing.T) {
	e.apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: workload
  namespace: %s
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %s
    imagePullPolicy: Never
    command: [sleep, infinity]
`, workNS, e.image))
	e.mustKC(t, "-n", workNS, "wait", "--for=condition=Ready", "pod/workload", "--timeout=120s")
	var pod corev1.Pod
	e.getJSON(t, &pod, "-n", workNS, "get", "pod", "workload")
	var appID string
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "app" {
			_, appID, _ = strings.Cut(cs.ContainerID, "://")
		}
	}
	if appID == "" {
		t.Fatalf("pod %s/workload has no container id for app: %+v", workNS, pod.Status.ContainerStatuses)
	}

	e.apply(t, fmt.Sprintf(`apiVersion: gadget.kinvolk.io/v1alpha1
kind: Trace
metadata:
  name: exec
  namespace: %s
spec:
  node: %s
  gadget: trace-exec
  outputMode: Status
  filter:
    namespace: %s
    podname: workload
    containername: app
`, pkgNS, e.node, workNS))
	e.annotate(t, "exec", "start")
	e.waitState(t, "exec", gadgetv1alpha1.TraceStarted)

	// A program name no other process on the machine runs.
	probe := fmt.Sprintf("e2eprobe%d", time.Now().UnixNano()%1_000_000)
	// The filter lets the container's execs only through: the Trace
	// counts once it has seen one of the probe's.
	eventually(t, time.Minute, "Trace exec to count the probe's execs", func() (bool, string) {
		e.mustKC(t, "-n", workNS, "exec", "workload", "-c", "app", "--", "/bin/sh", "-c",
			"cp /bin/true /tmp/"+probe+" && /tmp/"+probe)
		tr := e.trace(t, "exec")
		return tr.Status.EventCount > 0, fmt.Sprintf("state %s, %d events", tr.Status.State, tr.Status.EventCount)
	})
	e.annotate(t, "exec", "stop")
	tr := e.waitState(t, "exec", gadgetv1alpha1.TraceStopped)

	var events []map[string]any
	if err := json.Unmarshal([]byte(tr.Status.Output), &events); err != nil {
		t.Fatalf("Trace exec status.output is not a JSON array: %v\n%s", err, tr.Status.Output)
	}
	var hit map[string]any
	for _, ev := range events {
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), probe) {
			hit = ev
			break
		}
	}
	if hit == nil {
		t.Fatalf("no exec of %s among %d events of Trace exec:\n%s", probe, len(events), tr.Status.Output)
	}
	want := map[string]string{
		enricher.FieldNamespace:     workNS,
		enricher.FieldPod:           "workload",
		enricher.FieldContainer:     appID, // the runtime's id of container "app"
		enricher.FieldContainerName: "app",
	}
	for k, v := range want {
		if got := fmt.Sprint(hit[k]); got != v {
			t.Errorf("exec event field %s = %q, want %q (event %v)", k, got, v, hit)
		}
	}
	t.Logf("exec event among %d: %v", len(events), hit)
	for _, ev := range events {
		if ns := fmt.Sprint(ev[enricher.FieldNamespace]); ns != workNS {
			t.Errorf("the Trace's filter (namespace %s, pod workload, container app) let through an event of namespace %q: %v", workNS, ns, ev)
			break
		}
	}
}

// --- 3b. a Stream-mode Trace, read over TLS by its namespace's reader only -------------

// streamAuthenticated starts a Stream-mode Trace in the packages'
// namespace and reads it from the node pod, as a user would: a service
// account given Kubernetes' own view role there (the chart's
// gadgetpm-trace-viewer, aggregated by the cluster's controller) reads the
// probe's exec live; one given gadgetpm-trace-viewer in another namespace
// gets 403; no token gets 401.
func (e *env) streamAuthenticated(t *testing.T) {
	e.apply(t, fmt.Sprintf(`apiVersion: gadget.kinvolk.io/v1alpha1
kind: Trace
metadata:
  name: stream
  namespace: %s
spec:
  node: %s
  gadget: trace-exec
  outputMode: Stream
  filter:
    namespace: %s
    podname: workload
`, pkgNS, e.node, workNS))
	e.annotate(t, "stream", "start")
	e.waitState(t, "stream", gadgetv1alpha1.TraceStarted)
	t.Cleanup(func() { e.annotate(t, "stream", "stop") })

	const reader, outsider = "e2e-stream-reader", "e2e-stream-outsider"
	e.mustKC(t, "-n", pkgNS, "create", "serviceaccount", reader)
	e.mustKC(t, "-n", pkgNS, "create", "rolebinding", reader, "--clusterrole=view", "--serviceaccount="+pkgNS+":"+reader)
	e.mustKC(t, "-n", workNS, "create", "serviceaccount", outsider)
	e.mustKC(t, "-n", workNS, "create", "rolebinding", outsider, "--clusterrole=gadgetpm-trace-viewer", "--serviceaccount="+workNS+":"+outsider)
	eventually(t, time.Minute, "view to aggregate gadgetpm-trace-viewer's rights", func() (bool, string) {
		out, _ := e.kc("auth", "can-i", "get", "traces.gadget.kinvolk.io", "-n", pkgNS, "--as=system:serviceaccount:"+pkgNS+":"+reader)
		return strings.TrimSpace(out) == "yes", out
	})
	readerToken := strings.TrimSpace(e.mustKC(t, "-n", pkgNS, "create", "token", reader))
	outsiderToken := strings.TrimSpace(e.mustKC(t, "-n", workNS, "create", "token", outsider))

	nodePods := e.operatorPods(t, nodeLabel)
	if len(nodePods) != 1 || nodePods[0].Status.PodIP == "" {
		t.Fatalf("want one node pod with an IP, got %d", len(nodePods))
	}
	url := "https://" + net.JoinHostPort(nodePods[0].Status.PodIP, "8443") + "/traces/" + pkgNS + "/stream"
	// The chart's default: a self-signed certificate generated by the pod.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed by default
	defer c.CloseIdleConnections()
	get := func(ctx context.Context, token string) *http.Response {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return resp
	}
	for _, tc := range []struct {
		who, token string
		status     int
		body       string
	}{
		{"no token", "", http.StatusUnauthorized, "no bearer token"},
		{"the other namespace's reader", outsiderToken, http.StatusForbidden, "may not get traces.gadget.kinvolk.io"},
	} {
		resp := get(context.Background(), tc.token)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s: %s %q; want %d with %q", tc.who, resp.Status, body, tc.status, tc.body)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp := get(ctx, readerToken)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("the namespace's reader: %s %q", resp.Status, body)
	}
	probe := fmt.Sprintf("e2estream%d", time.Now().UnixNano()%1_000_000)
	seen := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // ends the read below
	wg.Go(func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), probe) {
				close(seen)
				return
			}
		}
	})
	eventually(t, time.Minute, "the probe's exec on the stream", func() (bool, string) {
		e.mustKC(t, "-n", workNS, "exec", "workload", "-c", "app", "--", "/bin/sh", "-c", "cp /bin/true /tmp/"+probe+" && /tmp/"+probe)
		select {
		case <-seen:
			return true, ""
		case <-time.After(2 * time.Second): // the stream's reader decides; this only paces the execs
			return false, "not streamed yet"
		}
	})
}

// --- 4. a scheduled Trace ----------------------------------------------------------------

func (e *env) scheduledTrace(t *testing.T) {
	const every, duration = 20 * time.Second, 5 * time.Second
	created := time.Now()
	e.apply(t, fmt.Sprintf(`apiVersion: gadget.kinvolk.io/v1alpha1
kind: Trace
metadata:
  name: every20s
  namespace: %s
spec:
  node: %s
  gadget: trace-exec
  outputMode: Status
  schedule: "@every 20s"
  duration: 5s
`, pkgNS, e.node))
	var tr gadgetv1alpha1.Trace
	eventually(t, 3*every, "two finished runs of the scheduled Trace every20s", func() (bool, string) {
		tr = e.trace(t, "every20s")
		finished := 0
		for _, r := range tr.Status.Runs {
			if r.EndTime != nil {
				finished++
			}
		}
		b, _ := json.Marshal(tr.Status.Runs)
		return finished >= 2, string(b)
	})
	e.mustKC(t, "-n", pkgNS, "delete", "trace", "every20s", "--wait=true", "--timeout=60s")

	runs := tr.Status.Runs
	b, _ := json.Marshal(runs)
	t.Logf("created %s; runs %s", created.UTC().Format(time.RFC3339Nano), b)
	const slack = 4 * time.Second
	if first := runs[0].StartTime.Sub(created); first > every+slack {
		t.Errorf("first run started %s after the Trace was created; the schedule is @every %s", first.Round(time.Millisecond), every)
	}
	for i, r := range runs {
		if r.Error != "" {
			t.Errorf("run %d failed: %s", i, r.Error)
		}
		if r.EndTime == nil {
			continue
		}
		if d := r.EndTime.Sub(r.StartTime.Time); d < duration-time.Second || d > duration+slack {
			t.Errorf("run %d lasted %s, want about %s (spec.duration)", i, d, duration)
		}
		if i > 0 {
			if gap := r.StartTime.Sub(runs[i-1].StartTime.Time); gap < every-slack || gap > every+slack {
				t.Errorf("runs %d and %d started %s apart, want %s ± %s", i-1, i, gap, every, slack)
			}
		}
	}
}

// --- 5. helm uninstall ---------------------------------------------------------------------

// programNames are the names the kernel gives the bundled trace-exec
// gadget's programs (BPF object names are cut at 15 bytes).
func (e *env) programNames(t *testing.T) map[string]bool {
	t.Helper()
	spec, err := ebpf.LoadCollectionSpec(filepath.Join(e.root, "charts", "packages", "trace-exec", "gadget", "program.bpf.o"))
	if err != nil {
		t.Fatalf("reading trace-exec's eBPF object: %v", err)
	}
	names := map[string]bool{}
	for name := range spec.Programs {
		if len(name) > 15 {
			name = name[:15]
		}
		names[name] = true
	}
	return names
}

type bpfProg struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func bpftoolProgs(t *testing.T) []bpfProg {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		t.Fatalf("bpftool prog show: %v (hack/setup-node.sh installs Debian's bpftool)", err)
	}
	var progs []bpfProg
	if err := json.Unmarshal(out, &progs); err != nil {
		t.Fatalf("bpftool -j prog show: %v", err)
	}
	return progs
}

// podProcesses returns the host pids of processes in the cgroups of the
// pod with the given UID (cgroupfs names them ".../pod<uid>/<container>").
func podProcesses(uid string) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), "pod"+uid) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		out[pid] = strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " ")
	}
	return out
}

func (e *env) uninstall(t *testing.T) {
	pods := e.operatorPods(t, podLabel)
	nodePods := e.operatorPods(t, nodeLabel)
	if len(nodePods) != 1 || len(pods) != clusterReplicas+1 {
		t.Fatalf("%d gadgetpm pods, %d of the node role, before uninstall; want %d and 1", len(pods), len(nodePods), clusterReplicas+1)
	}
	nodePod := nodePods[0]
	// The coordinator runs in the Lease holder only: its log has the
	// ordered stop lines.
	leader := e.leaseHolder(t)
	if !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return p.Name == leader && p.Name != nodePod.Name }) {
		t.Fatalf("the Lease holder %q is not a cluster-role pod", leader)
	}
	ours := e.programNames(t)

	// A running Trace holds trace-exec's programs at the moment of the
	// uninstall. Program ids only grow, so the ones that appear while it
	// starts are the operator's (bpftool's pids column needs kernel support
	// this machine may lack).
	ourIDs := func() map[int]string {
		ids := map[int]string{}
		for _, p := range bpftoolProgs(t) {
			if ours[p.Name] {
				ids[p.ID] = p.Name
			}
		}
		return ids
	}
	pre := ourIDs()
	e.annotate(t, "exec", "start")
	e.waitState(t, "exec", gadgetv1alpha1.TraceStarted)
	loaded := map[int]string{}
	for id, name := range ourIDs() {
		if _, old := pre[id]; !old {
			loaded[id] = name
		}
	}
	if len(loaded) == 0 {
		t.Fatalf("Trace exec is Started, yet bpftool shows no new program named like trace-exec's (%v)", keys(ours))
	}
	t.Logf("while Trace exec is Started, bpftool shows the operator's programs %v", loaded)
	procs := map[int]string{}
	for _, p := range pods {
		pp := podProcesses(string(p.UID))
		if len(pp) == 0 {
			t.Fatalf("no host process in the cgroups of pod %s (uid %s)", p.Name, p.UID)
		}
		maps.Copy(procs, pp)
	}

	// Follow the operator's log through its shutdown.
	logCtx, stopLog := context.WithCancel(context.Background())
	defer stopLog()
	var logBuf testlog.Buffer
	// --tail=1: the stream starts with the last line already logged, the
	// sign that it is attached.
	logCmd := exec.CommandContext(logCtx, e.kubectl, "-n", opNS, "logs", "-f", leader, "-c", "operator", "--tail=1")
	logCmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	logCmd.Stdout, logCmd.Stderr = &logBuf, &logBuf
	if err := logCmd.Start(); err != nil {
		t.Fatalf("kubectl logs -f: %v", err)
	}
	logDone := make(chan error, 1)
	go func() { logDone <- logCmd.Wait() }()
	eventually(t, 30*time.Second, "kubectl logs -f to attach", func() (bool, string) {
		return logBuf.String() != "", "no line yet"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if out, err := e.run(ctx, nil, e.helm, "uninstall", release, "-n", opNS, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	eventually(t, 2*time.Minute, "no gadgetpm pods", func() (bool, string) {
		p := e.operatorPods(t, podLabel)
		return len(p) == 0, fmt.Sprintf("%d pods", len(p))
	})
	select {
	case <-logDone:
	case <-time.After(30 * time.Second):
		stopLog()
		<-logDone
	}

	// Ordered teardown, as the operator logs it.
	order := []string{"helm-monitors", "kube-event-handling", "cron", "event-handler", "queues", "kube-monitors"}
	logText := logBuf.String()
	at := -1
	for _, svc := range order {
		re := regexp.MustCompile(`"msg":"stopped".*"service":"` + regexp.QuoteMeta(svc) + `"|stopped.*service[=:" ]+` + regexp.QuoteMeta(svc) + `\b`)
		loc := re.FindStringIndex(logText[max(at, 0):])
		if loc == nil {
			t.Errorf("the operator's log has no 'stopped' line for %s after the ones before it; order wanted %v; log:\n%s", svc, order, logText)
			break
		}
		t.Logf("log: %s", strings.TrimSpace(logText[max(at, 0)+loc[0]:max(at, 0)+loc[1]]))
		at = max(at, 0) + loc[1]
	}

	// No process of the chart's pods is left, hooks included.
	eventually(t, time.Minute, "no process left in the gadgetpm pods' cgroups", func() (bool, string) {
		left := map[int]string{}
		for _, p := range pods {
			maps.Copy(left, podProcesses(string(p.UID)))
		}
		return len(left) == 0, fmt.Sprint(left)
	})
	for pid := range procs {
		cg, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
		if err != nil {
			continue
		}
		for _, p := range pods {
			if strings.Contains(string(cg), "pod"+string(p.UID)) {
				t.Errorf("process %d (%s) of pod %s still runs", pid, procs[pid], p.Name)
			}
		}
	}
	eventually(t, 30*time.Second, "trace-exec's programs the operator loaded unloaded", func() (bool, string) {
		now := ourIDs()
		var left []string
		for id, name := range loaded {
			if _, ok := now[id]; ok {
				left = append(left, fmt.Sprintf("%s (id %d)", name, id))
			}
		}
		return len(left) == 0, "still loaded: " + strings.Join(left, ", ")
	})

	// The packages' Helm releases are left deployed, none half-done.
	var secrets corev1.SecretList
	e.getJSON(t, &secrets, "-n", pkgNS, "get", "secrets", "-l", "owner=helm")
	if len(secrets.Items) == 0 {
		t.Errorf("no Helm release Secrets in %s: the packages' releases are gone", pkgNS)
	}
	for _, s := range secrets.Items {
		switch st := s.Labels["status"]; st {
		case "deployed", "superseded":
		default:
			t.Errorf("Helm release %s (revision %s) is %q after the operator stopped", s.Labels["name"], s.Labels["version"], st)
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// --- cleanup ---------------------------------------------------------------------------------

// cleanup leaves the cluster without the test's objects, also after a
// failure: what it shows first helps find why.
func (e *env) cleanup(t *testing.T) {
	if t.Failed() {
		for _, args := range [][]string{
			{"get", "pods", "-A", "-o", "wide"},
			{"get", "gadgetpackages,traces", "-A", "-o", "yaml"},
			{"-n", opNS, "logs", "-l", podLabel, "-c", "operator", "--tail=200", "--prefix"},
			{"-n", opNS, "logs", "-l", clusterLabel, "-c", "hook-sandbox", "--tail=50", "--prefix"},
			{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		} {
			out, err := e.kc(args...)
			t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, errOrEmpty(err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, _ = e.run(ctx, nil, e.helm, "uninstall", release, "-n", opNS, "--wait", "--timeout", "2m")
	// With the operator gone nobody removes the finalizers.
	for _, kind := range []string{"traces", "gadgetpackages"} {
		out, _ := e.kc("get", kind, "-A", "-o", `jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}`)
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			ns, name, ok := strings.Cut(sc.Text(), "/")
			if !ok {
				continue
			}
			_, _ = e.kc("-n", ns, "patch", kind, name, "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
			_, _ = e.kc("-n", ns, "delete", kind, name, "--wait=false")
		}
	}
	_, _ = e.kc("delete", "packagerepositories", "--all", "--wait=false")
	for _, ns := range []string{workNS, hooksNS, pkgNS, opNS} {
		_, _ = e.kc("delete", "namespace", ns, "--wait=false", "--ignore-not-found")
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
