package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/internal/devenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/apis"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
)

// devTestPackage is the bundled package the end-to-end test installs:
// trace-exec reaches Running quickest (it has no hooks). The default,
// hook-demo, has its hooks tested in internal/bundled.
const devTestPackage = "trace-exec"

// devBinary builds gadgetpm into the test's temporary directory.
func devBinary(t *testing.T) (string, error) {
	bin := filepath.Join(t.TempDir(), "gadgetpm")
	out, err := exec.Command("go", testenv.GoBuildArgs(bin, ".")...).CombinedOutput()
	if err != nil {
		return "", errors.New("go build: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
}

// requireAssets fails the test (never skips) when no control plane
// binaries can be found, the way internal/testenv does.
func requireAssets(t *testing.T) {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") != "" {
		return
	}
	root, err := devenv.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if dirs, _ := filepath.Glob(filepath.Join(root, "hack", "bin", "k8s", "*", "kube-apiserver")); len(dirs) == 0 {
		t.Fatal("no control plane binaries: run hack/setup-envtest.sh (or make envtest), or set KUBEBUILDER_ASSETS")
	}
}

// lineWatcher collects a process's output and reports when a line
// containing a marker appears.
type lineWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func watchLines(r io.Reader) (*lineWatcher, chan struct{}) {
	w := &lineWatcher{lines: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.mu.Lock()
			w.buf.WriteString(sc.Text() + "\n")
			w.mu.Unlock()
			select {
			case w.lines <- sc.Text():
			default:
			}
		}
	}()
	return w, done
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *lineWatcher) waitFor(t *testing.T, marker string, timeout time.Duration, exited <-chan struct{}) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-w.lines:
			if strings.Contains(l, marker) {
				return
			}
		case <-exited:
			t.Fatalf("gadgetpm dev exited before printing %q:\n%s", marker, w.String())
		case <-deadline:
			t.Fatalf("gadgetpm dev did not print %q within %s:\n%s", marker, timeout, w.String())
		}
	}
}

// childProcesses lists the direct children of pid with their command
// names.
func childProcesses(t *testing.T, pid int) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	kids := map[int]string{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
			kids[p] = s[strings.IndexByte(s, '(')+1 : i]
		}
	}
	return kids
}

// alive reports whether pid still runs the command comm.
func alive(pid int, comm string) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(stat)
	return strings.Contains(s, "("+comm+")") && !strings.Contains(s, ") Z ")
}

// runPrinted runs the command that gadgetpm dev printed on the line
// holding marker, as a user pasting it into a shell would: from another
// directory, with nothing of the checkout on PATH.
func runPrinted(t *testing.T, printed, marker string) ([]byte, error) {
	t.Helper()
	for _, l := range strings.Split(printed, "\n") {
		if strings.Contains(l, marker) {
			cmd := exec.Command("/bin/sh", "-c", strings.TrimSpace(l))
			cmd.Dir = t.TempDir()
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
			return cmd.CombinedOutput()
		}
	}
	t.Fatalf("no command with %q was printed:\n%s", marker, printed)
	return nil, nil
}

func TestDevEndToEnd(t *testing.T) {
	requireAssets(t)
	// The test's own clients log through controller-runtime's root logger.
	ctrllog.SetLogger(logr.Discard())
	bin, err := devBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "debug.sock")
	kubeconfig := filepath.Join(dir, "kube", "config")

	cmd := exec.Command(bin, "dev", "--dir", dir, "--package", devTestPackage, "--node", "dev-node",
		"--kubeconfig-out", kubeconfig, "--debug-socket", socket)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		_ = pw.Close()
		close(exited)
	}()
	out, outDone := watchLines(pr)
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		<-outDone
	})

	out.waitFor(t, "Press Ctrl-C to stop everything.", 5*time.Minute, exited)
	printed := out.String()
	for _, want := range []string{"[1/6]", "[6/6]", "gadgetpm.io/privileged-traces=true", "export KUBECONFIG=" + kubeconfig, "kubectl get gadgetpackages", "kubectl get traces", bin + " dump --socket " + socket} {
		if !strings.Contains(printed, want) {
			t.Errorf("output lacks %q:\n%s", want, printed)
		}
	}

	kids := childProcesses(t, cmd.Process.Pid)
	var names []string
	for _, c := range kids {
		names = append(names, c)
	}
	for _, want := range []string{"kube-apiserver", "etcd"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("no %s among the children of gadgetpm dev: %v", want, kids)
		}
	}

	t.Run("kubeconfig reaches the API server as an administrator", func(t *testing.T) {
		fi, err := os.Stat(kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("kubeconfig mode %o, want 600", fi.Mode().Perm())
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		scheme := runtime.NewScheme()
		if err := clientgoscheme.AddToScheme(scheme); err != nil {
			t.Fatal(err)
		}
		if err := apis.AddToScheme(scheme); err != nil {
			t.Fatal(err)
		}
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var pr gadgetpmv1alpha1.PackageRepository
		if err := c.Get(ctx, client.ObjectKey{Name: devenv.RepositoryName}, &pr); err != nil {
			t.Fatalf("PackageRepository %s: %v", devenv.RepositoryName, err)
		}
		if !strings.HasPrefix(pr.Spec.URL, "http://127.0.0.1:") {
			t.Fatalf("repository URL %q is not on loopback", pr.Spec.URL)
		}
		resp, err := http.Get(pr.Spec.URL + "/index.yaml")
		if err != nil {
			t.Fatalf("repository server: %v", err)
		}
		index, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(index), "name: "+devTestPackage) {
			t.Fatalf("index.yaml: %d\n%s", resp.StatusCode, index)
		}
		var gp gadgetpmv1alpha1.GadgetPackage
		if err := c.Get(ctx, client.ObjectKey{Namespace: devenv.DefaultNamespace, Name: devTestPackage}, &gp); err != nil {
			t.Fatalf("GadgetPackage: %v", err)
		}
		if gp.Spec.Repository != devenv.RepositoryName || gp.Spec.Package != devTestPackage {
			t.Fatalf("GadgetPackage spec %+v", gp.Spec)
		}
		// Administrator: may create what no namespaced role grants.
		ns := &gadgetpmv1alpha1.PackageRepository{}
		ns.Name = "admin-probe"
		ns.Spec.URL = "https://example.com/charts"
		if err := c.Create(ctx, ns); err != nil {
			t.Fatalf("the kubeconfig's user cannot create a cluster-scoped object: %v", err)
		}
	})

	t.Run("a second dev on the same directory is refused", func(t *testing.T) {
		_, err := run(t, "dev", "--dir", dir, "--package", devTestPackage, "--kubeconfig-out", filepath.Join(t.TempDir(), "kc"), "--log-file", "-")
		if err == nil || !strings.Contains(err.Error(), "in use by another gadgetpm dev (pid "+strconv.Itoa(cmd.Process.Pid)) {
			t.Fatalf("second dev: %v", err)
		}
	})

	t.Run("dump answers", func(t *testing.T) {
		// dev is ready once the debug socket answers; the package shows
		// in the dump once the cluster role has loaded it, soon after.
		eventually.NoError(t, time.Minute, "the dump to list package "+devenv.DefaultNamespace+"."+devTestPackage, func() error {
			dump, err := runPrinted(t, printed, " dump --socket ")
			if err != nil {
				t.Fatalf("gadgetpm dump: %v\n%s", err, dump)
			}
			var d debugserver.Dump
			if err := sigsyaml.Unmarshal(dump, &d); err != nil {
				t.Fatalf("dump is not YAML: %v\n%s", err, dump)
			}
			for _, p := range d.Packages {
				if p.Key == devenv.DefaultNamespace+"."+devTestPackage {
					return nil
				}
			}
			return fmt.Errorf("the dump lacks it:\n%s", dump)
		})
		queues, err := runPrinted(t, printed, " queue list --socket ")
		if err != nil || !strings.HasPrefix(string(queues), "NAME ") {
			t.Fatalf("gadgetpm queue list: %v\n%s", err, queues)
		}
	})

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("gadgetpm dev did not exit within 10s of SIGINT:\n%s", out.String())
	}
	<-outDone
	if waitErr != nil {
		t.Fatalf("gadgetpm dev exited with %v after SIGINT (want 0) in %s:\n%s", waitErr, time.Since(sent), out.String())
	}
	if !strings.Contains(out.String(), "stopped in") {
		t.Errorf("no stop report:\n%s", out.String())
	}
	for pid, comm := range kids {
		if alive(pid, comm) {
			t.Errorf("%s (pid %d) still runs after gadgetpm dev exited", comm, pid)
		}
	}
	for _, p := range []string{kubeconfig, socket} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

func TestDevBadInput(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "config")
	if err := os.WriteFile(foreign, []byte("apiVersion: v1\nkind: Config\ncontexts:\n- name: prod\n  context: {cluster: prod, user: me}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown package", []string{"--package", "nope"}, []string{`package "nope" is not among the bundled packages`, "trace-exec", "--package"}},
		{"bad node name", []string{"--node", "Bad_Node"}, []string{`node name "Bad_Node"`, "--node"}},
		{"bad namespace", []string{"--namespace", "a.b"}, []string{`namespace "a.b"`}},
		{"foreign kubeconfig", []string{"--kubeconfig-out", foreign}, []string{"refusing to overwrite " + foreign, "--kubeconfig-out"}},
		{"kubeconfig is a directory", []string{"--kubeconfig-out", dir}, []string{"is a directory"}},
		{"socket path too long", []string{"--debug-socket", filepath.Join(dir, strings.Repeat("s", 110))}, []string{"at most 107", "--debug-socket"}},
		{"assets without binaries", []string{"--assets", dir}, []string{"--assets", "kube-apiserver"}},
		{"root outside a checkout", []string{"--root", "/"}, []string{"no gadgetpm go.mod", "--root"}},
		{"extra argument", []string{"now"}, []string{"unknown command"}},
		{"bad log format", []string{"--log-format", "xml"}, []string{`--log-format "xml"`, `"json"`, `"text"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"dev", "--dir", filepath.Join(dir, "dev"), "--package", devTestPackage, "--log-file", "-"}, tc.args...)
			_, err := run(t, args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if b, _ := os.ReadFile(foreign); !strings.Contains(string(b), "prod") {
		t.Fatal("the foreign kubeconfig was changed")
	}
}

func TestDevHelp(t *testing.T) {
	out, err := run(t, "dev", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"make run", "Ctrl-C", "Examples:", "--assets", "--package", "--node", "--kubeconfig-out", "--debug-socket", "--dir", "--log-file", "hack/setup-envtest.sh"} {
		if !strings.Contains(out, w) {
			t.Errorf("dev --help lacks %q", w)
		}
	}
}

// TestMakeRun runs `make run` the way a terminal does: make and gadgetpm in
// one foreground process group that Ctrl-C signals as a whole. It installs
// the default package, hook-demo, as a new user's first run does: its
// hooks' printed lines are in the operator log, and the printed dump
// command, run as printed, shows them too.
func TestMakeRun(t *testing.T) {
	requireAssets(t)
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed: apt-get install -y make")
	}
	root, err := devenv.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("make", "-C", root, "run",
		"ARGS=--dir "+dir+" --node make-node")
	if testenv.Race {
		// make build then reuses the packages this test run compiled with
		// the race detector instead of compiling every dependency again.
		cmd.Env = append(os.Environ(), "GOFLAGS="+strings.Join(testenv.RaceFlags(), " "))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // make reports the interrupt in its own exit status
		_ = pw.Close()
		close(exited)
	}()
	out, outDone := watchLines(pr)
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		<-outDone
	})

	out.waitFor(t, "Press Ctrl-C to stop everything.", 10*time.Minute, exited)
	printed := out.String()
	logFile := filepath.Join(dir, "operator.log")
	if !strings.Contains(printed, "operator log: "+logFile) {
		t.Errorf("make run does not say where the operator log is (%s):\n%s", logFile, printed)
	}
	// hook-demo's onStartup hook says "hook-demo 10-startup.sh: started;
	// binding context [...]".
	const said = "hook-demo 10-startup.sh: started"
	eventually.NoError(t, 2*time.Minute, fmt.Sprintf("hook-demo's line %q in both the operator log and the dump", said), func() error {
		log, _ := os.ReadFile(logFile)
		dump, err := runPrinted(t, printed, " dump --socket ")
		if err != nil {
			t.Fatalf("the printed dump command failed: %v\n%s", err, dump)
		}
		if strings.Contains(string(log), said) && strings.Contains(string(dump), said) {
			return nil
		}
		return fmt.Errorf("log:\n%s\ndump:\n%s", log, dump)
	})
	// make's child is bin/gadgetpm dev; its children the control plane.
	var devPid int
	for pid, comm := range childProcesses(t, cmd.Process.Pid) {
		if comm == "gadgetpm" {
			devPid = pid
		}
	}
	if devPid == 0 {
		t.Fatalf("no gadgetpm process under make:\n%s", out.String())
	}
	kids := childProcesses(t, devPid)
	if len(kids) < 2 {
		t.Fatalf("gadgetpm dev runs %v, want kube-apiserver and etcd", kids)
	}

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("make run did not stop within 10s of Ctrl-C:\n%s", out.String())
	}
	<-outDone
	if !strings.Contains(out.String(), "stopped in") {
		t.Fatalf("gadgetpm dev did not report a clean stop:\n%s", out.String())
	}
	// make says "Error N" when its command exits non-zero, "Interrupt"
	// when only the signal ended it.
	if strings.Contains(out.String(), "] Error ") {
		t.Fatalf("gadgetpm dev exited non-zero under make:\n%s", out.String())
	}
	if alive(devPid, "gadgetpm") {
		t.Errorf("gadgetpm dev (pid %d) still runs", devPid)
	}
	for pid, comm := range kids {
		if alive(pid, comm) {
			t.Errorf("%s (pid %d) still runs after make run stopped", comm, pid)
		}
	}
}
