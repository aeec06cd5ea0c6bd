package trace_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/store"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	testenv.Main(m, &env, testenv.OwnControlPlane()) // fault tests freeze the API server (PauseAPIServer)
}

// requireRoot skips where eBPF cannot be loaded at all.
func requireRoot(t testing.TB) {
	t.Helper()
	testroot.Require(t, "loading eBPF")
}

// privilegedNamespace is a new namespace labelled for node-wide tracing:
// for the tests whose Traces trace host processes.
func privilegedNamespace(t testing.TB) string {
	t.Helper()
	ns := env.Namespace(t)
	if err := trace.AllowNodeWide(context.Background(), env.Client, ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

// packages holds the bundled packages packed once per test binary, by
// chart name: digest and archive bytes.
var packed struct {
	once sync.Once
	dir  string
	byN  map[string]packedPkg
	err  error
}

type packedPkg struct {
	digest string
	data   []byte
}

func packBundled(t testing.TB, name string) packedPkg {
	t.Helper()
	packed.once.Do(func() {
		packed.byN = map[string]packedPkg{}
		dir, err := os.MkdirTemp("", "gadgetpm-trace-test-")
		if err != nil {
			packed.err = err
			return
		}
		packed.dir = dir
		for _, n := range []string{"trace-exec", "snapshot-process", "trace-open"} {
			dest := filepath.Join(dir, n+".tgz")
			if err := chartrepo.Pack(filepath.Join(env.RepoRoot, "charts", "packages", n), n, dest); err != nil {
				packed.err = err
				return
			}
			data, err := os.ReadFile(dest)
			if err != nil {
				packed.err = err
				return
			}
			sum := sha256.Sum256(data)
			packed.byN[n] = packedPkg{digest: hex.EncodeToString(sum[:]), data: data}
		}
	})
	if packed.err != nil {
		t.Fatalf("pack bundled packages: %v", packed.err)
	}
	p, ok := packed.byN[name]
	if !ok {
		t.Fatalf("no bundled package %s", name)
	}
	return p
}

// node is one node's trace controller in its own manager.
type node struct {
	name   string
	ctrl   *trace.Controller
	store  *store.Store
	hub    *output.Hub
	dir    string
	cancel context.CancelFunc
	done   chan error
}

type nodeOptions struct {
	// devMode runs without NodeCheck (as gadgetpm dev): no Node object,
	// and every Trace annotated for another node is answered with an
	// error, so such a test must not run in parallel with others.
	devMode bool
	dataDir string
	hub     *output.Hub
	now     func() time.Time
	onRun   func(trace.RunStarted)
	// progressRate and progressInterval, when set, replace the defaults.
	progressRate     float64
	progressInterval time.Duration
	// emptyStore starts with no package in the store: the node downloads
	// what its Traces need.
	emptyStore bool
	// noCrossNamespaceRefs and logger are the controller's options.
	noCrossNamespaceRefs bool
	logger               logr.Logger
	// config, when set, is how the node reaches the API server.
	config *rest.Config
	// unsharded: the node sees the Traces of every shard and of none,
	// such as those kubectl creates, not only this binary's
	// (testenv's CacheOptions).
	unsharded bool
}

// startNode starts a node controller (NodeCheck off: spec.node must be
// name) with the node role's cache options, whose store holds the bundled
// packages unless o.emptyStore. Stop it with stop; the test's cleanup
// stops it too.
func startNode(t testing.TB, name string, o nodeOptions) *node {
	t.Helper()
	dir := o.dataDir
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := store.New(filepath.Join(dir, "packages"), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"trace-exec", "snapshot-process", "trace-open"} {
		if o.emptyStore {
			break
		}
		p := packBundled(t, n)
		if err := st.PutArchive(p.digest, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if !o.devMode {
		nd := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := env.Client.Create(context.Background(), nd); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cfg := env.Config
	if o.config != nil {
		cfg = o.config
	}
	cacheOpts := env.CacheOptions(trace.CacheOptions()) // the node role's, as its process has it
	if o.unsharded {
		cacheOpts = trace.CacheOptions()
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  env.Scheme,
		Cache:                   cacheOpts,
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		Controller:              config.Controller{SkipNameValidation: ptr(true)},
		GracefulShutdownTimeout: ptr(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := trace.New(trace.Options{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: env.Scheme,
		Recorder: mgr.GetEventRecorderFor("gadgetpm-test"), //nolint:staticcheck // the controller takes client-go's recorder
		NodeName: name, DataDir: dir, Store: st, Hub: o.hub, Now: o.now, NodeCheck: !o.devMode,
		OnRunStarted: o.onRun, ProgressRate: o.progressRate, ProgressInterval: o.progressInterval,
		NoCrossNamespaceRefs: o.noCrossNamespaceRefs, Logger: o.logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{name: name, ctrl: c, store: st, hub: o.hub, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop cancels the node's manager and waits for it (every run stopped,
// its status written).
func (n *node) stop(t testing.TB) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("node %s: manager: %v", n.name, err)
		}
	case <-time.After(90 * time.Second):
		t.Errorf("node %s: the manager did not stop within 90s", n.name)
	}
}

func ptr[T any](v T) *T { return &v }

// runningPackage creates a GadgetPackage of a bundled package with the
// status the coordinator writes once it runs: Running, enabled, with the
// archive's digest.
func runningPackage(t testing.TB, ns, name, chart string) *v1alpha1.GadgetPackage {
	t.Helper()
	ctx := context.Background()
	p := packBundled(t, chart)
	gp := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: "bundled", Package: chart, Version: "*"},
	}
	if err := env.Client.Create(ctx, gp); err != nil {
		t.Fatal(err)
	}
	gp.Status.Phase = v1alpha1.PhaseRunning
	gp.Status.Enabled = true
	gp.Status.Version = "1.0.0"
	gp.Status.Digest = p.digest
	if err := env.Client.Status().Update(ctx, gp); err != nil {
		t.Fatal(err)
	}
	return gp
}

type traceOpt func(*gadgetv1alpha1.Trace)

func newTrace(t testing.TB, ns, name, nodeName, gadget string, opts ...traceOpt) *gadgetv1alpha1.Trace {
	t.Helper()
	tr := &gadgetv1alpha1.Trace{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       gadgetv1alpha1.TraceSpec{Node: nodeName, Gadget: gadget},
	}
	for _, o := range opts {
		o(tr)
	}
	if err := env.Client.Create(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

func key(tr *gadgetv1alpha1.Trace) types.NamespacedName {
	return types.NamespacedName{Namespace: tr.Namespace, Name: tr.Name}
}

// annotate sets the operation annotation, as kubectl annotate --overwrite
// does.
func annotate(t testing.TB, k types.NamespacedName, op string) {
	t.Helper()
	ctx := context.Background()
	var tr gadgetv1alpha1.Trace
	if err := env.Client.Get(ctx, k, &tr); err != nil {
		t.Fatal(err)
	}
	before := tr.DeepCopy()
	if tr.Annotations == nil {
		tr.Annotations = map[string]string{}
	}
	tr.Annotations[gadgetv1alpha1.OperationAnnotation] = op
	if err := env.Client.Patch(ctx, &tr, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

// waitTrace polls the Trace until cond holds and returns it; it fails the
// test with the last state after timeout.
func waitTrace(t testing.TB, k types.NamespacedName, timeout time.Duration, what string, cond func(*gadgetv1alpha1.Trace) bool) *gadgetv1alpha1.Trace {
	t.Helper()
	return eventually.Value(t, timeout, fmt.Sprintf("trace %s: %s", k, what), func() (*gadgetv1alpha1.Trace, error) {
		var tr gadgetv1alpha1.Trace
		err := env.Client.Get(context.Background(), k, &tr)
		if err == nil && cond(&tr) {
			return &tr, nil
		}
		return nil, fmt.Errorf("last: err=%v annotations=%v status=%+v", err, tr.Annotations, tr.Status)
	})
}

// operationDone: the annotation is gone (the outcome is in status).
func operationDone(tr *gadgetv1alpha1.Trace) bool {
	return tr.Annotations[gadgetv1alpha1.OperationAnnotation] == ""
}

func stateIs(s gadgetv1alpha1.TraceState) func(*gadgetv1alpha1.Trace) bool {
	return func(tr *gadgetv1alpha1.Trace) bool { return operationDone(tr) && tr.Status.State == s }
}

// execMarkerQuiet runs bin as cred (nil: as the test), ignoring how it
// ends.
func execMarkerQuiet(bin string, cred *syscall.Credential) {
	cmd := exec.Command(bin)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	_ = cmd.Run()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func uniqueNode(t *testing.T) string {
	return fmt.Sprintf("node-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano()%100000)
}
