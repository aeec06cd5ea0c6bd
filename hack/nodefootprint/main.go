// Command nodefootprint measures the memory of the node role beside the
// full operator (hack/node-footprint.sh runs it; see docs/benchmarks.md).
//
// It starts a real control plane (kube-apiserver and etcd from
// $KUBEBUILDER_ASSETS) with gadgetpm's CRDs, serves the bundled trace-exec
// package from a repository on loopback, creates its PackageRepository and
// GadgetPackage, --cluster-nodes Nodes with a kubelet's status and a
// started Trace of another node (which makes a node role with --node-check
// cache the Nodes). Then, one after the other and for the same node:
//
//  1. the full operator (--full): it installs the package (the node role
//     needs a Running package with a digest); measured idle, then with
//     --traces Traces of trace-exec started; its Traces are deleted and it
//     is stopped;
//  2. the node role (--node) with an empty data directory, so it downloads
//     the package itself; measured idle, then with the same Traces.
//
// Each measurement is the median of --samples readings one second apart,
// after --settle: VmRSS, RssAnon and RssFile from /proc/<pid>/status and
// go_memstats_heap_inuse_bytes from the process's metrics endpoint. Both
// commands get --kubeconfig, --node-name, --data-dir,
// --metrics-bind-address, --health-probe-bind-address and --node-check
// (true when there are Nodes) appended to the arguments they are given.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

const (
	namespace = "gadget"
	pkgName   = "trace-exec"
	nodeName  = "footprint-node"
)

type options struct {
	root, work         string
	full, node         []string
	nodeEnv            []string
	traces, samples    int
	settle, runTimeout time.Duration
	outputMode         string
	clusterNodes       int
}

func main() {
	var o options
	var full, node, nodeEnv string
	flag.StringVar(&o.root, "root", ".", "the gadgetpm checkout")
	flag.StringVar(&o.work, "work", "", "scratch directory (required)")
	flag.StringVar(&full, "full", "", "the full operator's command line, space-separated (required)")
	flag.StringVar(&node, "node", "", "the node role's command line, space-separated (required)")
	flag.StringVar(&nodeEnv, "node-env", "", "extra environment of the node role, space-separated NAME=VALUE")
	flag.IntVar(&o.traces, "traces", 10, "Traces started on the gadget in the busy measurement")
	flag.IntVar(&o.samples, "samples", 5, "readings per measurement (one a second; the median is reported)")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "wait before a measurement")
	flag.DurationVar(&o.runTimeout, "timeout", 3*time.Minute, "bound of each wait (package Running, Traces Started)")
	flag.StringVar(&o.outputMode, "output-mode", "Status", "the Traces' spec.outputMode (Status or File)")
	flag.IntVar(&o.clusterNodes, "cluster-nodes", 100, "Node objects in the cluster (with a kubelet's status: images, conditions, capacity), the measured node among them; 0 runs both processes with --node-check=false")
	flag.Parse()
	o.full, o.node, o.nodeEnv = strings.Fields(full), strings.Fields(node), strings.Fields(nodeEnv)
	if o.work == "" || len(o.full) == 0 || len(o.node) == 0 {
		fmt.Fprintln(os.Stderr, "nodefootprint: --work, --full and --node are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodefootprint:", err)
		os.Exit(1)
	}
}

// reading is one measurement of a process, in bytes.
type reading struct {
	vmRSS, rssAnon, rssFile, heap int64
}

func run(ctx context.Context, o options) (err error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := apis.AddToScheme(scheme); err != nil {
		return err
	}
	repoDir := filepath.Join(o.work, "repo")
	if _, err := chartrepo.Build(ctx, filepath.Join(o.root, "charts", "packages"), repoDir, chartrepo.BuildOptions{}); err != nil {
		return err
	}
	te := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(o.root, "charts", "gadgetpm", "crds")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 2 * time.Minute,
	}
	cfg, err := te.Start()
	if err != nil {
		return fmt.Errorf("start the control plane ($KUBEBUILDER_ASSETS from hack/setup-envtest.sh): %w", err)
	}
	defer func() { err = errors.Join(err, te.Stop()) }()
	kubeconfig := filepath.Join(o.work, "kubeconfig")
	if err := writeKubeconfig(te, kubeconfig); err != nil {
		return err
	}
	repoURL, stopRepo, err := serveDir(repoDir)
	if err != nil {
		return err
	}
	defer stopRepo()

	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := createObjects(ctx, c, repoURL); err != nil {
		return err
	}
	if err := createNodes(ctx, c, o.clusterNodes); err != nil {
		return err
	}
	if o.clusterNodes > 1 {
		// A Trace of another node, started: every node role reads its
		// spec.node (so it caches the Nodes) and leaves it to that node.
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}}); err != nil {
			return err
		}
		tr := &gadgetv1alpha1.Trace{
			ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "other-node",
				Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: gadgetv1alpha1.OperationStart}},
			Spec: gadgetv1alpha1.TraceSpec{Node: "node-001", Gadget: namespace + "/" + pkgName},
		}
		if err := c.Create(ctx, tr); err != nil {
			return fmt.Errorf("create Trace %s/%s: %w", tr.Namespace, tr.Name, err)
		}
	}

	rows := map[string][2]reading{}
	for _, p := range []struct {
		name string
		cmd  []string
		env  []string
	}{{"full", o.full, nil}, {"node", o.node, o.nodeEnv}} {
		idle, busy, err := measure(ctx, c, o, p.name, p.cmd, p.env, kubeconfig)
		if err != nil {
			return fmt.Errorf("%s: %w; the end of its log:\n%s", p.name, err, logTail(filepath.Join(o.work, p.name+".log"), 20))
		}
		rows[p.name] = [2]reading{idle, busy}
	}
	printTable(os.Stdout, o, rows)
	return nil
}

// measure starts one process, measures it idle and busy, and stops it.
func measure(ctx context.Context, c client.Client, o options, name string, cmdline, env []string, kubeconfig string) (idle, busy reading, err error) {
	dataDir := filepath.Join(o.work, name+"-data")
	metricsAddr, err := freeAddr()
	if err != nil {
		return idle, busy, err
	}
	args := append(append([]string{}, cmdline[1:]...), "--kubeconfig="+kubeconfig, "--node-name="+nodeName,
		"--data-dir="+dataDir, "--metrics-bind-address="+metricsAddr, "--health-probe-bind-address=0", fmt.Sprintf("--node-check=%v", o.clusterNodes > 0))
	logPath := filepath.Join(o.work, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return idle, busy, err
	}
	defer logFile.Close()
	cmd := exec.Command(cmdline[0], args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	fmt.Fprintf(os.Stderr, "nodefootprint: %s: %s (log %s)\n", name, strings.Join(cmd.Args, " "), logPath)
	if err := cmd.Start(); err != nil {
		return idle, busy, fmt.Errorf("start %s: %w", cmdline[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if stopped {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	alive := func() error {
		select {
		case werr := <-exited:
			stopped = true
			return fmt.Errorf("the process exited (%v); see %s", werr, logPath)
		default:
			return ctx.Err()
		}
	}
	// ready: the metrics endpoint answers and the package is Running
	if err := waitFor(o.runTimeout, alive, "metrics endpoint and package Running", func() (bool, error) {
		if _, err := heapInuse(metricsAddr); err != nil {
			return false, nil
		}
		var gp gadgetpmv1alpha1.GadgetPackage
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: pkgName}, &gp); err != nil {
			return false, err
		}
		return gp.Status.Phase == gadgetpmv1alpha1.PhaseRunning && gp.Status.Digest != "", nil
	}); err != nil {
		return idle, busy, err
	}
	if idle, err = sample(o, cmd.Process.Pid, metricsAddr, alive); err != nil {
		return idle, busy, err
	}
	names := make([]string, o.traces)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", name, i)
		tr := &gadgetv1alpha1.Trace{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: names[i],
				Annotations: map[string]string{gadgetv1alpha1.OperationAnnotation: gadgetv1alpha1.OperationStart}},
			Spec: gadgetv1alpha1.TraceSpec{Node: nodeName, Gadget: pkgName, OutputMode: gadgetv1alpha1.OutputMode(o.outputMode)},
		}
		if err := c.Create(ctx, tr); err != nil {
			return idle, busy, fmt.Errorf("create Trace %s: %w", tr.Name, err)
		}
	}
	if err := waitFor(o.runTimeout, alive, fmt.Sprintf("%d Traces Started", o.traces), func() (bool, error) {
		for _, n := range names {
			var tr gadgetv1alpha1.Trace
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: n}, &tr); err != nil {
				return false, err
			}
			if tr.Status.OperationError != "" {
				return false, fmt.Errorf("Trace %s: %s", n, tr.Status.OperationError)
			}
			if tr.Status.State != gadgetv1alpha1.TraceStarted {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return idle, busy, err
	}
	// some execs for the Traces to see while they are measured
	execStorm(ctx, 200)
	if busy, err = sample(o, cmd.Process.Pid, metricsAddr, alive); err != nil {
		return idle, busy, err
	}
	// the Traces go while their node still runs, so that their finalizers
	// are removed
	for _, n := range names {
		tr := &gadgetv1alpha1.Trace{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: n}}
		if err := c.Delete(ctx, tr); client.IgnoreNotFound(err) != nil {
			return idle, busy, err
		}
	}
	err = waitFor(o.runTimeout, alive, "Traces deleted", func() (bool, error) {
		var list gadgetv1alpha1.TraceList
		if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return false, err
		}
		return len(list.Items) == 0, nil
	})
	return idle, busy, err
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func execStorm(ctx context.Context, n int) {
	for range n {
		if ctx.Err() != nil {
			return
		}
		_ = exec.CommandContext(ctx, "/bin/true").Run()
	}
}

// sample waits o.settle, then returns the median of o.samples readings.
func sample(o options, pid int, metricsAddr string, alive func() error) (reading, error) {
	deadline := time.Now().Add(o.settle)
	for time.Now().Before(deadline) {
		if err := alive(); err != nil {
			return reading{}, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rs []reading
	for i := range o.samples {
		if i > 0 {
			time.Sleep(time.Second)
		}
		if err := alive(); err != nil {
			return reading{}, err
		}
		r, err := procStatus(pid)
		if err != nil {
			return reading{}, err
		}
		if r.heap, err = heapInuse(metricsAddr); err != nil {
			return reading{}, err
		}
		rs = append(rs, r)
	}
	med := func(f func(reading) int64) int64 {
		v := make([]int64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return v[len(v)/2]
	}
	return reading{
		vmRSS:   med(func(r reading) int64 { return r.vmRSS }),
		rssAnon: med(func(r reading) int64 { return r.rssAnon }),
		rssFile: med(func(r reading) int64 { return r.rssFile }),
		heap:    med(func(r reading) int64 { return r.heap }),
	}, nil
}

// procStatus reads VmRSS, RssAnon and RssFile of pid.
func procStatus(pid int) (reading, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return reading{}, err
	}
	defer f.Close()
	var r reading
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			r.vmRSS = n << 10
		case "RssAnon":
			r.rssAnon = n << 10
		case "RssFile":
			r.rssFile = n << 10
		}
	}
	return r, sc.Err()
}

// heapInuse reads go_memstats_heap_inuse_bytes from the metrics endpoint.
func heapInuse(addr string) (int64, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s/metrics has no go_memstats_heap_inuse_bytes", addr)
}

func waitFor(timeout time.Duration, alive func() error, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := alive(); err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: not within %s", what, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func printTable(w io.Writer, o options, rows map[string][2]reading) {
	mb := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	ratio := func(a, b int64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(a)/float64(b))
	}
	fmt.Fprintf(w, "| process | state | VmRSS MiB | RssAnon MiB | RssFile MiB | Go heap in use MiB |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- |\n")
	states := []string{"idle", fmt.Sprintf("%d Traces (%s)", o.traces, o.outputMode)}
	for _, name := range []string{"full", "node"} {
		for i, st := range states {
			r := rows[name][i]
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, st, mb(r.vmRSS), mb(r.rssAnon), mb(r.rssFile), mb(r.heap))
		}
	}
	for i, st := range states {
		n, f := rows["node"][i], rows["full"][i]
		fmt.Fprintf(w, "| node / full | %s | %s | %s | %s | %s |\n", st, ratio(n.vmRSS, f.vmRSS), ratio(n.rssAnon, f.rssAnon), ratio(n.rssFile, f.rssFile), ratio(n.heap, f.heap))
	}
}

func createObjects(ctx context.Context, c client.Client, repoURL string) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	pr := &gadgetpmv1alpha1.PackageRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "bundled"},
		Spec: gadgetpmv1alpha1.PackageRepositorySpec{URL: repoURL, Interval: metav1.Duration{Duration: time.Hour},
			Insecure: true}, // served over plain HTTP on loopback
	}
	if err := c.Create(ctx, pr); err != nil {
		return fmt.Errorf("create PackageRepository: %w", err)
	}
	gp := &gadgetpmv1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: pkgName},
		Spec:       gadgetpmv1alpha1.GadgetPackageSpec{Repository: "bundled", Package: pkgName},
	}
	if err := c.Create(ctx, gp); err != nil {
		return fmt.Errorf("create GadgetPackage: %w", err)
	}
	return nil
}

// createNodes creates n Nodes, nodeName first, each with the status a
// kubelet writes (a node role with --node-check caches every Node).
func createNodes(ctx context.Context, c client.Client, n int) error {
	for i := range n {
		name := nodeName
		if i > 0 {
			name = fmt.Sprintf("node-%03d", i)
		}
		nd := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			"node.kubernetes.io/instance-type": "m5.xlarge", "topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", i%3)}}}
		if err := c.Create(ctx, nd); err != nil {
			return fmt.Errorf("create Node %s: %w", name, err)
		}
		st := &nd.Status
		st.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")}
		st.Allocatable = st.Capacity
		st.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)}, {Type: corev1.NodeHostName, Address: name}}
		now := metav1.Now()
		for _, t := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
			st.Conditions = append(st.Conditions, corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, LastHeartbeatTime: now, LastTransitionTime: now,
				Reason: "KubeletHasSufficient" + string(t), Message: "kubelet reports " + string(t) + " as expected"})
		}
		st.NodeInfo = corev1.NodeSystemInfo{MachineID: fmt.Sprintf("%032x", i), SystemUUID: fmt.Sprintf("%032x", i), BootID: fmt.Sprintf("%032x", i),
			KernelVersion: "6.12.0-amd64", OSImage: "Debian GNU/Linux 13", ContainerRuntimeVersion: "containerd://2.1.0",
			KubeletVersion: "v1.36.0", OperatingSystem: "linux", Architecture: "amd64"}
		for j := range 40 {
			img := fmt.Sprintf("registry.example.com/team-%d/service-%d", j%7, j)
			st.Images = append(st.Images, corev1.ContainerImage{SizeBytes: int64(20+j) << 20,
				Names: []string{fmt.Sprintf("%s@sha256:%064x", img, i*40+j), img + ":v1." + fmt.Sprint(j)}})
		}
		if err := c.Status().Update(ctx, nd); err != nil {
			return fmt.Errorf("write status of Node %s: %w", name, err)
		}
	}
	return nil
}

func writeKubeconfig(te *envtest.Environment, path string) error {
	user, err := te.AddUser(envtest.User{Name: "footprint", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	data, err := user.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func serveDir(dir string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() {
		_ = srv.Close()
		<-done
	}, nil
}
