// Package testenv starts the real control plane that gadgetpm's tests run
// against: one kube-apiserver and etcd per test binary (controller-runtime's
// envtest), with gadgetpm's CRDs from charts/gadgetpm/crds installed; or,
// under hack/test-controlplane.sh (make test), reaches the one control plane
// the run shares (SharedKubeconfigEnv), each binary in a shard of its own.
//
// The binaries come from hack/setup-envtest.sh, found through
// KUBEBUILDER_ASSETS or in the tool cache (internal/toolcache). When neither has
// them the test binary fails with the command to run; it never skips.
//
// Env's WaitPackage and WaitEvent poll a GadgetPackage or the Events of a
// namespace through package eventually, the one way tests wait.
//
// Typical use, in a package's main_test.go:
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) { testenv.Main(m, &env) }
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gadgetpm/gadgetpm/internal/toolcache"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
)

// ErrNoAssets is returned when no kube-apiserver and etcd can be found.
var ErrNoAssets = errors.New("no control plane binaries: run 'hack/setup-envtest.sh' (or 'make test') to build them, or set KUBEBUILDER_ASSETS")

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a controller-runtime client with gadgetpm's, the core
	// Kubernetes and the apiextensions types registered.
	Client client.Client
	// Scheme is the scheme behind Client.
	Scheme *runtime.Scheme
	// RepoRoot is the repository's top directory.
	RepoRoot string
	// Shard is the binary's shard of a control plane shared by a run
	// (SharedKubeconfigEnv): Client labels the gadgetpm objects it
	// creates with it, namespaces start with it. "" with a control plane
	// of the binary's own.
	Shard string

	env *envtest.Environment
	seq atomic.Int64
}

// Start starts a control plane with the CRDs installed.
func Start(opts ...Option) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := findAssets()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register core types: %w", err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register apiextensions types: %w", err)
	}
	if err := apis.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register gadgetpm types: %w", err)
	}
	var so startOptions
	for _, o := range opts {
		o(&so)
	}
	var shared *rest.Config
	if !so.own {
		if shared, err = sharedConfig(); err != nil {
			return nil, err
		}
	}
	te := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(root, "charts", "gadgetpm", "crds")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if shared != nil {
		// started, with the CRDs installed, by hack/test-controlplane.sh
		te = &envtest.Environment{UseExistingCluster: new(true), Config: shared, Scheme: scheme}
	}
	cfg, err := te.Start()
	if err != nil {
		if shared != nil {
			return nil, fmt.Errorf("reach the shared control plane of %s: %w", SharedKubeconfigEnv, err)
		}
		return nil, fmt.Errorf("start control plane from %s: %w", assets, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("create client: %w", err)
	}
	e := &Env{Config: cfg, Client: c, Scheme: scheme, RepoRoot: root, env: te}
	if shared != nil {
		if e.Shard, err = newShard(); err != nil {
			return nil, err
		}
		e.Client = shardClient{Client: c, shard: e.Shard}
	}
	return e, nil
}

// Option changes how Start and Main reach a control plane.
type Option func(*startOptions)

type startOptions struct {
	own bool
}

// OwnControlPlane makes the binary start a control plane of its own even
// when the run shares one (SharedKubeconfigEnv): for tests that freeze or
// stop the API server (Env.PauseAPIServer), which must not stall the
// other binaries of the run.
func OwnControlPlane() Option { return func(o *startOptions) { o.own = true } }

// Stop stops the control plane and removes its data.
func (e *Env) Stop() error {
	if e == nil || e.env == nil {
		return nil
	}
	return e.env.Stop()
}

// Main is a TestMain body: it starts the control plane, stores it in *target,
// runs the tests, stops the control plane and exits. When the control plane
// cannot start it prints why and what to do, and exits 1.
func Main(m *testing.M, target **Env, opts ...Option) {
	begin := time.Now()
	env, err := Start(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
	timing("control plane up", begin)
	*target = env
	code := m.Run()
	begin = time.Now()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stop control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	timing("control plane stopped", begin)
	os.Exit(code)
}

// timing prints how long a step of Main took when GADGETPM_TESTENV_TIMING
// is set, so that a run's cost of control planes can be told from its
// tests' (docs/development.md, "How long make test takes").
func timing(what string, since time.Time) {
	if os.Getenv("GADGETPM_TESTENV_TIMING") == "" {
		return
	}
	fmt.Fprintf(os.Stderr, "testenv: %s in %.2fs\n", what, time.Since(since).Seconds())
}

// Namespace creates a fresh namespace named after the test and returns its
// name. envtest runs no namespace controller, so it is not deleted. On a
// shared control plane the name starts with the binary's shard.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := e.name(t.Name())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// name returns a name no other of the run has, made of s: a DNS label
// of at most 40 characters and a sequence number, the shard first on a
// shared control plane.
func (e *Env) name(s string) string {
	if e.Shard == "" {
		return fmt.Sprintf("%s-%d", dnsLabel(s, 40), e.seq.Add(1))
	}
	// as long as without a shard: names tests derive from it stay valid
	return fmt.Sprintf("%s-%s-%d", e.Shard, dnsLabel(s, 40-len(e.Shard)-1), e.seq.Add(1))
}

// dnsLabel turns a test name into a prefix of at most max characters
// that fits a namespace name.
func dnsLabel(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > max {
		out = strings.Trim(out[:max], "-")
	}
	if out == "" {
		out = "test"
	}
	return out
}

// RepoRoot finds the repository's top directory (the one holding go.mod)
// from the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// findAssets returns KUBEBUILDER_ASSETS when set, else the newest complete
// version directory in the tool cache (internal/toolcache).
func findAssets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if !complete(dir) {
			return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s lacks kube-apiserver or etcd: %w", dir, ErrNoAssets)
		}
		return dir, nil
	}
	root, err := toolcache.Dir()
	if err != nil {
		return "", err
	}
	if dir := toolcache.Newest(root, complete); dir != "" {
		return dir, nil
	}
	return "", ErrNoAssets
}

func complete(dir string) bool {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// WriteKubeconfig writes a kubeconfig reaching the control plane as its
// administrator, for processes the tests run (the operator, kubectl), into
// the test's temporary directory, and returns its path.
func (e *Env) WriteKubeconfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := e.WriteKubeconfigFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteKubeconfigFile writes a kubeconfig reaching the control plane as
// its administrator to path.
func (e *Env) WriteKubeconfigFile(path string) error {
	c := e.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
