package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gadgetpm/gadgetpm/internal/cmdline"
	"github.com/gadgetpm/gadgetpm/internal/toolcache"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
	"github.com/gadgetpm/gadgetpm/pkg/noderole"
	"github.com/gadgetpm/gadgetpm/pkg/process"
	"github.com/gadgetpm/gadgetpm/pkg/trace"
)

// Names of what the environment creates.
const (
	// RepositoryName is the PackageRepository serving the bundled packages.
	RepositoryName = "bundled"
	// DefaultPackage is the bundled package installed unless told otherwise.
	DefaultPackage = "hook-demo"
	// DefaultNamespace holds the GadgetPackage.
	DefaultNamespace = "gadget"
	// userName is the administrator the kubeconfig authenticates as; it also
	// names the kubeconfig's cluster and context, which is how a kubeconfig
	// written here is told apart from someone else's.
	userName = "gadgetpm-dev"
)

// Stop budget: a stop takes a few seconds (well inside 10); these are the
// limits of each step when something hangs.
const (
	operatorStopGrace = 2 * time.Second // tasks in flight, inside Run
	operatorStopWait  = 4 * time.Second // for Run to return
	controlPlaneStop  = 5 * time.Second // per component; the API server drains requests first
	repoServerStop    = time.Second
)

// Options configure Run. Relative paths are taken from the working
// directory.
type Options struct {
	// Root is the gadgetpm checkout. Default: the one holding the working
	// directory.
	Root string
	// Assets holds kube-apiserver and etcd. Default: $KUBEBUILDER_ASSETS,
	// else the newest complete k8s/* of the tool cache (internal/toolcache), else what
	// <Root>/hack/setup-envtest.sh builds (its progress is shown).
	Assets string
	// Dir holds everything the environment writes: the packed repository,
	// the operator's data, the lock file. Default <Root>/hack/dev.
	Dir string
	// Kubeconfig is where the administrator's kubeconfig is written (mode
	// 0600). Default <Dir>/kubeconfig. An existing file is replaced only
	// when an earlier run wrote it.
	Kubeconfig string
	// DebugSocket is the operator's debug socket. Default <Dir>/debug.sock;
	// "-" disables it.
	DebugSocket string
	// NodeName is the node the operator runs Traces for. Default the
	// host name.
	NodeName string
	// Package is the bundled package to install. Default DefaultPackage.
	Package string
	// Namespace of the GadgetPackage. Default DefaultNamespace.
	Namespace string
	// Out receives the progress and the "try next" lines. Default discard.
	Out io.Writer
	// Logger is the operator's logger. Default discard.
	Logger logr.Logger
	// HookServiceAccount is the service account hooks run as; Run
	// creates it in the operator's namespace (process.Namespace). Empty:
	// hooks get the administrator's kubeconfig (process.Options).
	HookServiceAccount string
	// HookTokenExpiry is the lifetime of each hook token; default
	// hookcreds.DefaultExpiry.
	HookTokenExpiry time.Duration
	// HookLimits are the operator's (process.Options).
	HookLimits coordinator.HookLimits
	// DefaultServiceAccount is the operator's (process.Options).
	DefaultServiceAccount string
	// RepositoryWorkers is the operator's (process.Options).
	RepositoryWorkers int
	// HookSandbox and HookUser are the operator's (process.Options);
	// default off.
	HookSandbox sandbox.Mode
	HookUser    sandbox.User
	// References are the operator's --cluster-resource-namespace and
	// --no-cross-namespace-refs (process.Options).
	References cmdline.References
	// Downloads and MaxHookResultSize are the operator's size limits
	// (process.Options).
	Downloads         cmdline.Downloads
	MaxHookResultSize cmdline.Size
	// CacheGCInterval is --cache-gc-interval; zero: the default.
	CacheGCInterval time.Duration
	// Stream is the operator's listener of Stream-mode Traces
	// (process.Options); its zero value serves none.
	Stream noderole.StreamOptions
	// Command is the gadgetpm binary named in the commands printed for
	// the user to try, so they work as printed whatever PATH holds; the
	// caller passes its own os.Executable(). Default "gadgetpm".
	Command string

	// socketWait bounds the wait for the debug socket to answer. Default
	// 20s.
	socketWait time.Duration
}

// setDefaults fills the defaults in and checks the options.
func (o *Options) setDefaults() error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.Command == "" {
		o.Command = "gadgetpm"
	}
	if o.socketWait == 0 {
		o.socketWait = 20 * time.Second
	}
	var err error
	if o.Root == "" {
		if o.Root, err = FindRoot("."); err != nil {
			return err
		}
	} else if o.Root, err = FindRoot(o.Root); err != nil {
		return err
	}
	if o.Dir == "" {
		o.Dir = DefaultDir(o.Root)
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return fmt.Errorf("dev environment directory: %w", err)
	}
	if o.Kubeconfig == "" {
		o.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	}
	if o.Kubeconfig, err = filepath.Abs(o.Kubeconfig); err != nil {
		return fmt.Errorf("kubeconfig path: %w", err)
	}
	if err := checkOurs(o.Kubeconfig); err != nil {
		return err
	}
	if o.DebugSocket == "" {
		o.DebugSocket = filepath.Join(o.Dir, "debug.sock")
	}
	if o.DebugSocket != "-" {
		if o.DebugSocket, err = filepath.Abs(o.DebugSocket); err != nil {
			return fmt.Errorf("debug socket path: %w", err)
		}
		if len(o.DebugSocket) > 107 {
			return fmt.Errorf("debug socket path %s is %d bytes long, a unix socket path holds at most 107: pass a shorter --debug-socket", o.DebugSocket, len(o.DebugSocket))
		}
	}
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: read the host name: %w; pass --node", err)
		}
		o.NodeName = strings.ToLower(h)
	}
	if errs := validation.IsDNS1123Subdomain(o.NodeName); len(errs) > 0 {
		return fmt.Errorf("node name %q is not a valid Kubernetes node name (%s): pass --node with a lower-case DNS name", o.NodeName, strings.Join(errs, "; "))
	}
	if o.Package == "" {
		o.Package = DefaultPackage
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q is not a valid namespace name (%s)", o.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(o.Package); len(errs) > 0 {
		return fmt.Errorf("package %q is not a valid package name (%s): pass --package with the name of a chart under charts/packages", o.Package, strings.Join(errs, "; "))
	}
	return nil
}

// Run brings the environment up, reports progress and what to try next on
// opts.Out, and keeps it running until ctx ends or the operator fails. It
// then stops the operator, the repository server and the control plane, in
// that order, within about 10 seconds, and returns nil after a clean stop
// that ctx caused.
//
// While the operator runs, the process environment's KUBECONFIG is the
// written kubeconfig (and KUBERNETES_SERVICE_* are unset), because hooks
// inherit them to reach the API server with kubectl when
// HookServiceAccount is empty; Run restores them
// when it returns. Run is meant to own its process, as `gadgetpm dev` does.
func Run(ctx context.Context, opts Options) (err error) {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	p := &progress{w: opts.Out, total: 6}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", opts.Dir, err)
	}
	unlock, err := lockDir(opts.Dir)
	if err != nil {
		return err
	}
	defer unlock()

	// Everything started below is pushed here and stopped in reverse
	// order, whether Run fails half-way or ctx ends.
	var stack stopStack
	defer func() {
		if stack.empty() {
			return
		}
		fmt.Fprintln(opts.Out, "stopping...")
		start := time.Now()
		if serr := stack.run(opts.Out); serr != nil {
			err = errors.Join(err, serr)
		}
		fmt.Fprintf(opts.Out, "stopped in %.1fs\n", time.Since(start).Seconds())
	}()

	// 1. The repository first: a wrong --package fails before anything
	// starts.
	p.step("packing the bundled packages of %s", filepath.Join(opts.Root, "charts", "packages"))
	repoDir := filepath.Join(opts.Dir, "repo")
	if err := os.RemoveAll(repoDir); err != nil {
		return fmt.Errorf("clear %s: %w", repoDir, err)
	}
	built, err := chartrepo.Build(ctx, filepath.Join(opts.Root, "charts", "packages"), repoDir, chartrepo.BuildOptions{Progress: indent(opts.Out)})
	if err != nil {
		return err
	}
	if err := hasPackage(built, opts.Package); err != nil {
		return err
	}
	p.done("%d package(s) in %s", len(built), repoDir)

	// 2. The control plane.
	p.step("starting the control plane (kube-apiserver, etcd) with gadgetpm's CRDs")
	assets, err := findAssets(ctx, opts, p)
	if err != nil {
		return err
	}
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	te := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(opts.Root, "charts", "gadgetpm", "crds")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  controlPlaneStop,
	}
	adminCfg, err := te.Start()
	if err != nil {
		return fmt.Errorf("start the control plane from %s: %w", assets, err)
	}
	stack.push("control plane stopped", func() error {
		if err := te.Stop(); err != nil {
			return fmt.Errorf("stop the control plane: %w", err)
		}
		return nil
	})
	p.done("API server at %s (binaries from %s)", adminCfg.Host, assets)

	// 3. The repository server.
	p.step("serving the repository on loopback")
	repoURL, stopRepo, err := serveDir(repoDir, opts.Logger)
	if err != nil {
		return err
	}
	stack.push("repository server stopped", stopRepo)
	p.done("%s", repoURL)

	// 4. The kubeconfig.
	p.step("writing the kubeconfig")
	user, err := te.AddUser(envtest.User{Name: userName, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add the %s user: %w", userName, err)
	}
	if err := writeKubeconfig(opts.Kubeconfig, user.Config()); err != nil {
		return err
	}
	stack.push("kubeconfig removed", func() error { return removeKubeconfig(opts.Kubeconfig) })
	p.done("%s (user %s, cluster admin)", opts.Kubeconfig, userName)

	// 5. The objects.
	p.step("creating PackageRepository %s and GadgetPackage %s/%s", RepositoryName, opts.Namespace, opts.Package)
	cfg := rest.CopyConfig(adminCfg)
	cfg.QPS, cfg.Burst = 100, 200
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("create a client: %w", err)
	}
	if err := createObjects(ctx, c, repoURL, opts); err != nil {
		return err
	}
	p.note("namespace %s is labelled %s=true: its Traces see every process of the machine, not only its pods'", opts.Namespace, trace.PrivilegedTracesLabel)
	p.done("done")

	// 6. The operator.
	p.step("starting the operator for node %s", opts.NodeName)
	if os.Geteuid() != 0 {
		p.note("not running as root: the operator cannot load the gadgets' eBPF programs, so traces will fail")
	}
	restoreEnv := hookKubeEnv(opts.Kubeconfig)
	defer restoreEnv()
	opCtx, stopOp := context.WithCancel(context.Background())
	opDone := make(chan error, 1)
	go func() {
		opDone <- process.Run(opCtx, cfg, process.Options{
			NodeName:    opts.NodeName,
			DataDir:     filepath.Join(opts.Dir, "data"),
			DebugSocket: opts.DebugSocket,
			MetricsAddr: "0",
			ProbeAddr:   "0",
			StopGrace:   operatorStopGrace,
			Logger:      opts.Logger,
			HookSandbox: opts.HookSandbox, HookUser: opts.HookUser,
			ClusterResourceNamespace: opts.References.ClusterResourceNamespace, NoCrossNamespaceRefs: opts.References.NoCrossNamespaceRefs,
			MaxPackageBytes: int64(opts.Downloads.MaxPackageSize), MaxIndexBytes: int64(opts.Downloads.MaxIndexSize), MaxHookResultBytes: int64(opts.MaxHookResultSize), CacheGCInterval: opts.CacheGCInterval,
			// the dev control plane has no Node objects: a Trace's
			// spec.node must be this node's name
			NodeCheck:          false,
			HookServiceAccount: opts.HookServiceAccount,
			HookTokenExpiry:    opts.HookTokenExpiry,
			HookLimits:         opts.HookLimits,

			// packages without spec.serviceAccountName act as it
			DefaultServiceAccount: opts.DefaultServiceAccount,
			Stream:                opts.Stream,
			RepositoryWorkers:     opts.RepositoryWorkers,
		})
	}()
	opStopped := false
	stack.push("operator stopped", func() error {
		stopOp()
		if opStopped {
			return nil
		}
		select {
		case err := <-opDone:
			if err != nil {
				return fmt.Errorf("operator: %w", err)
			}
			return nil
		case <-time.After(operatorStopWait):
			return fmt.Errorf("the operator did not stop within %s", operatorStopWait)
		}
	})
	if opts.DebugSocket != "-" {
		switch err := waitSocket(ctx, opts.DebugSocket, opts.socketWait, opDone); {
		case errors.Is(err, errOperatorExited):
			opStopped = true
			return fmt.Errorf("the operator stopped while starting: %w", <-opDone)
		case err != nil:
			p.done("warning: the debug socket %s does not answer yet (%v); the operator may still be starting", opts.DebugSocket, err)
		default:
			p.done("debug socket %s answers", opts.DebugSocket)
		}
	} else {
		p.done("running (debug socket disabled)")
	}

	printNext(opts)

	select {
	case <-ctx.Done():
		fmt.Fprintln(opts.Out)
		return nil
	case opErr := <-opDone:
		opStopped = true
		if opErr == nil {
			opErr = errors.New("it returned before being told to stop")
		}
		return fmt.Errorf("the operator stopped: %w", opErr)
	}
}

func printNext(opts Options) {
	w := opts.Out
	bin, socket := shellQuote(opts.Command), shellQuote(opts.DebugSocket)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "gadgetpm is running. Try next, in another terminal:")
	fmt.Fprintf(w, "  export KUBECONFIG=%s\n", shellQuote(opts.Kubeconfig))
	fmt.Fprintln(w, "  kubectl get packagerepositories")
	fmt.Fprintln(w, "  kubectl get gadgetpackages -A")
	fmt.Fprintln(w, "  kubectl get traces -A")
	if opts.DebugSocket != "-" {
		fmt.Fprintf(w, "  %s dump --socket %s\n", bin, socket)
		fmt.Fprintf(w, "  %s queue list --socket %s\n", bin, socket)
	}
	fmt.Fprintln(w, "Press Ctrl-C to stop everything.")
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that are safe unquoted, so printed commands paste as they are.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:,@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register core types: %w", err)
	}
	if err := apis.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register gadgetpm types: %w", err)
	}
	return s, nil
}

// findAssets applies the Assets default chain, building the binaries when
// nothing else has them.
func findAssets(ctx context.Context, opts Options, p *progress) (string, error) {
	if opts.Assets != "" {
		if err := checkAssets(opts.Assets); err != nil {
			return "", fmt.Errorf("--assets: %w", err)
		}
		return opts.Assets, nil
	}
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if err := checkAssets(dir); err != nil {
			return "", fmt.Errorf("KUBEBUILDER_ASSETS: %w; unset it to use the tool cache, or fix it", err)
		}
		return dir, nil
	}
	cache, err := toolcache.Dir()
	if err != nil {
		return "", err
	}
	if dir := cachedAssets(cache); dir != "" {
		return dir, nil
	}
	p.note("no cached binaries in %s: running hack/setup-envtest.sh (about ten minutes the first time)", toolcache.K8sDir(cache))
	return runSetupEnvtest(ctx, opts.Root, opts.Out)
}

func hasPackage(built []chartrepo.Built, name string) error {
	names := make([]string, 0, len(built))
	for _, b := range built {
		if b.Name == name {
			return nil
		}
		names = append(names, b.Name)
	}
	sort.Strings(names)
	return fmt.Errorf("package %q is not among the bundled packages (%s): pass --package with one of them", name, strings.Join(names, ", "))
}

func createObjects(ctx context.Context, c client.Client, repoURL string, opts Options) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", opts.Namespace, err)
	}
	// A single-user environment traces the whole machine, host processes
	// included: its namespace is one whose Traces are not confined to it.
	if err := trace.AllowNodeWide(ctx, c, opts.Namespace); err != nil {
		return err
	}
	pr := &gadgetpmv1alpha1.PackageRepository{
		ObjectMeta: metav1.ObjectMeta{Name: RepositoryName},
		Spec: gadgetpmv1alpha1.PackageRepositorySpec{
			URL: repoURL,
			// The bundled repository changes only when dev restarts.
			Interval: metav1.Duration{Duration: time.Hour},
			// Served over plain HTTP on loopback, without credentials.
			Insecure: true,
		},
	}
	if err := c.Create(ctx, pr); err != nil {
		return fmt.Errorf("create PackageRepository %s: %w", RepositoryName, err)
	}
	gp := &gadgetpmv1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Name: opts.Package, Namespace: opts.Namespace},
		Spec:       gadgetpmv1alpha1.GadgetPackageSpec{Repository: RepositoryName, Package: opts.Package},
	}
	if err := c.Create(ctx, gp); err != nil {
		return fmt.Errorf("create GadgetPackage %s/%s: %w", opts.Namespace, opts.Package, err)
	}
	if opts.HookServiceAccount != "" {
		// The hooks' account gets no rights beyond what every
		// authenticated user has, as the chart's (docs/hooks.md).
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: opts.HookServiceAccount, Namespace: process.Namespace()}}
		if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ServiceAccount %s/%s for hooks: %w", sa.Namespace, sa.Name, err)
		}
	}
	return nil
}

// serveDir serves dir over HTTP on a random loopback port.
func serveDir(dir string, log logr.Logger) (url string, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the repository server: %w", err)
	}
	srv := &http.Server{
		Handler:           http.FileServer(http.Dir(dir)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), repoServerStop)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "repository server")
		}
		return nil
	}
	return "http://" + ln.Addr().String(), stop, nil
}

var errOperatorExited = errors.New("operator exited")

// waitSocket waits until something answers on the socket, the operator
// exits (errOperatorExited; its error stays in opDone), ctx ends, or max
// passes.
func waitSocket(ctx context.Context, path string, max time.Duration, opDone chan error) error {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case err := <-opDone:
			opDone <- err
			return errOperatorExited
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("nothing answered within %s", max)
		case <-tick.C:
		}
	}
}

// lockDir takes an exclusive lock on dir so two environments never share
// it.
func lockDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, "dev.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		_ = f.Close()
		holder := strings.TrimSpace(string(b))
		if holder == "" {
			holder = "another process"
		}
		return nil, fmt.Errorf("%s is in use by another gadgetpm dev (pid %s): stop it first, or pass --dir with another directory", dir, holder)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	return func() {
		_ = f.Truncate(0)
		_ = f.Close()
	}, nil
}

// progress numbers the steps on the console.
type progress struct {
	w     io.Writer
	n     int
	total int
	start time.Time
}

func (p *progress) step(format string, args ...any) {
	p.n++
	p.start = time.Now()
	fmt.Fprintf(p.w, "[%d/%d] %s\n", p.n, p.total, fmt.Sprintf(format, args...))
}

func (p *progress) note(format string, args ...any) {
	fmt.Fprintf(p.w, "      %s\n", fmt.Sprintf(format, args...))
}

func (p *progress) done(format string, args ...any) {
	fmt.Fprintf(p.w, "      %s (%.1fs)\n", fmt.Sprintf(format, args...), time.Since(p.start).Seconds())
}

// indent prefixes every line written to w to nest it under a step.
func indent(w io.Writer) io.Writer { return &indentWriter{w: w, bol: true} }

type indentWriter struct {
	w   io.Writer
	bol bool
}

func (iw *indentWriter) Write(b []byte) (int, error) {
	for i, c := range b {
		if iw.bol {
			if _, err := io.WriteString(iw.w, "      "); err != nil {
				return i, err
			}
			iw.bol = false
		}
		if _, err := iw.w.Write([]byte{c}); err != nil {
			return i, err
		}
		if c == '\n' {
			iw.bol = true
		}
	}
	return len(b), nil
}

// stopStack runs stop functions in reverse order of their push; each is
// named by what it reports when it succeeds.
type stopStack struct {
	names []string
	fns   []func() error
}

func (s *stopStack) push(name string, fn func() error) {
	s.names = append(s.names, name)
	s.fns = append(s.fns, fn)
}

func (s *stopStack) empty() bool { return len(s.fns) == 0 }

func (s *stopStack) run(out io.Writer) error {
	var errs []error
	for i := len(s.fns) - 1; i >= 0; i-- {
		start := time.Now()
		err := s.fns[i]()
		if err != nil {
			errs = append(errs, err)
			fmt.Fprintf(out, "      %v\n", err)
			continue
		}
		fmt.Fprintf(out, "      %s (%.1fs)\n", s.names[i], time.Since(start).Seconds())
	}
	s.fns, s.names = nil, nil
	return errors.Join(errs...)
}

// DefaultDir is the directory Run writes to under a checkout unless
// Options.Dir says otherwise.
func DefaultDir(root string) string { return filepath.Join(root, "hack", "dev") }

// hookKubeEnv points the variables hooks inherit for kubectl at the dev
// control plane and returns a function that restores them.
func hookKubeEnv(kubeconfig string) (restore func()) {
	keys := []string{"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_PORT_HTTPS"}
	saved := map[string]*string{}
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok {
			saved[k] = &v
		} else {
			saved[k] = nil
		}
		_ = os.Unsetenv(k)
	}
	_ = os.Setenv("KUBECONFIG", kubeconfig)
	return func() {
		for k, v := range saved {
			if v == nil {
				_ = os.Unsetenv(k)
			} else {
				_ = os.Setenv(k, *v)
			}
		}
	}
}
