package devenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
)

func checkout(t *testing.T) string {
	t.Helper()
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestFindRoot(t *testing.T) {
	root := checkout(t)
	if _, err := os.Stat(filepath.Join(root, "charts", "packages")); err != nil {
		t.Fatalf("FindRoot(.) = %s, which has no charts/packages: %v", root, err)
	}
	if got, err := FindRoot(filepath.Join(root, "cmd", "gadgetpm")); err != nil || got != root {
		t.Fatalf("FindRoot(cmd/gadgetpm) = %s, %v; want %s", got, err, root)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FindRoot(other); err == nil || !strings.Contains(err.Error(), "--root") {
		t.Fatalf("FindRoot in another module: %v, want an error pointing at --root", err)
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	root := checkout(t)
	o := Options{Root: root, NodeName: "node-1"}
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(root, "hack", "dev")
	if o.Dir != dev || o.Kubeconfig != filepath.Join(dev, "kubeconfig") || o.DebugSocket != filepath.Join(dev, "debug.sock") ||
		o.Package != DefaultPackage || o.Namespace != DefaultNamespace {
		t.Fatalf("defaults: %+v", o)
	}
	o = Options{Root: root, DebugSocket: "-"}
	if err := o.setDefaults(); err != nil || o.DebugSocket != "-" || o.NodeName == "" {
		t.Fatalf("disabled socket, host name default: %v %+v", err, o)
	}

	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"node with capitals", Options{NodeName: "Node_1"}, `node name "Node_1"`},
		{"namespace with a dot", Options{Namespace: "a.b"}, `namespace "a.b"`},
		{"package with a slash", Options{Package: "a/b"}, `package "a/b"`},
		{"socket path too long", Options{DebugSocket: "/tmp/" + strings.Repeat("x", 120)}, "at most 107"},
		{"not a checkout", Options{Root: "/"}, "--root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if o.Root == "" {
				o.Root = root
			}
			o.Dir = t.TempDir()
			err := o.setDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("setDefaults: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckAssets(t *testing.T) {
	dir := t.TempDir()
	if err := checkAssets(dir); err == nil || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Fatalf("empty dir: %v", err)
	}
	for _, n := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkAssets(dir); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Fatalf("non-executable binaries: %v", err)
	}
	for _, n := range []string{"kube-apiserver", "etcd"} {
		if err := os.Chmod(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkAssets(dir); err != nil {
		t.Fatal(err)
	}
	// A cache with an incomplete newer version picks the complete one.
	root := t.TempDir()
	complete := filepath.Join(root, "k8s", "1.35.0-linux-amd64")
	incomplete := filepath.Join(root, "k8s", "1.36.0-linux-amd64")
	if err := os.MkdirAll(incomplete, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(complete), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, complete); err != nil {
		t.Fatal(err)
	}
	if got := cachedAssets(root); got != complete {
		t.Fatalf("cachedAssets = %q, want %q", got, complete)
	}
}

func TestHasPackage(t *testing.T) {
	built := []chartrepo.Built{{Name: "trace-open"}, {Name: "hook-demo"}, {Name: "trace-exec"}}
	if err := hasPackage(built, "hook-demo"); err != nil {
		t.Fatal(err)
	}
	err := hasPackage(built, "nope")
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "(hook-demo, trace-exec, trace-open)") {
		t.Fatalf("missing package: %v", err)
	}
}

func TestKubeconfigNeverClobbersForeignFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca"), CertData: []byte("cert"), KeyData: []byte("key")}}

	ours := filepath.Join(dir, "sub", "kubeconfig")
	if err := writeKubeconfig(ours, cfg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(ours)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig: %v, mode %v", err, fi.Mode())
	}
	kc, err := clientcmd.LoadFromFile(ours)
	if err != nil {
		t.Fatal(err)
	}
	if kc.CurrentContext != userName || kc.Clusters[userName].Server != cfg.Host || string(kc.AuthInfos[userName].ClientKeyData) != "key" {
		t.Fatalf("kubeconfig content: %+v", kc)
	}
	// An earlier run's file is replaced, and removed on stop.
	if err := writeKubeconfig(ours, cfg); err != nil {
		t.Fatalf("rewrite our own kubeconfig: %v", err)
	}
	if err := removeKubeconfig(ours); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ours); !os.IsNotExist(err) {
		t.Fatalf("kubeconfig not removed: %v", err)
	}

	for name, content := range map[string]string{
		"someone's kubeconfig": "apiVersion: v1\nkind: Config\ncontexts:\n- name: prod\n  context: {cluster: prod, user: me}\ncurrent-context: prod\n",
		"not a kubeconfig":     "hello\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := writeKubeconfig(p, cfg); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
				t.Fatalf("write over %s: %v", name, err)
			}
			if err := removeKubeconfig(p); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(p); string(b) != content {
				t.Fatalf("%s was changed: %q", name, b)
			}
		})
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDir(dir); err == nil || !strings.Contains(err.Error(), "in use by another gadgetpm dev") || !strings.Contains(err.Error(), "--dir") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	again, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}

func TestIndentWriter(t *testing.T) {
	var b bytes.Buffer
	w := indent(&b)
	for _, chunk := range []string{"one\ntw", "o\n", "three\n"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if want := "      one\n      two\n      three\n"; b.String() != want {
		t.Fatalf("indented %q, want %q", b.String(), want)
	}
}

func TestRunFailsFastOnUnknownPackage(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	err := Run(context.Background(), Options{Root: checkout(t), Dir: dir, Package: "no-such-package", NodeName: "n", Out: &out})
	if err == nil || !strings.Contains(err.Error(), `package "no-such-package" is not among the bundled packages`) {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(out.String(), "[2/6]") {
		t.Fatalf("the control plane step started despite the bad package:\n%s", out.String())
	}
}

func TestHookKubeEnv(t *testing.T) {
	t.Setenv("KUBECONFIG", "/home/me/.kube/config")
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
	restore := hookKubeEnv("/dev/kc")
	if os.Getenv("KUBECONFIG") != "/dev/kc" {
		t.Fatalf("KUBECONFIG = %q", os.Getenv("KUBECONFIG"))
	}
	if _, ok := os.LookupEnv("KUBERNETES_SERVICE_HOST"); ok {
		t.Fatal("KUBERNETES_SERVICE_HOST still set: kubectl in hooks would reach another cluster")
	}
	restore()
	if os.Getenv("KUBECONFIG") != "/home/me/.kube/config" || os.Getenv("KUBERNETES_SERVICE_HOST") != "10.0.0.1" {
		t.Fatalf("not restored: %q %q", os.Getenv("KUBECONFIG"), os.Getenv("KUBERNETES_SERVICE_HOST"))
	}
}

// The commands printed for the user run as printed: they name the binary
// by its path (nothing is on PATH after `make run`), and paths a shell
// would split are quoted.
func TestPrintNextCommandsRunAsPrinted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "it's a dir")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gadgetpm")
	// Stands in for the binary: prints its arguments, one a line.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "debug.sock")
	var out bytes.Buffer
	printNext(Options{Out: &out, Command: bin, DebugSocket: socket, Kubeconfig: filepath.Join(dir, "kubeconfig")})
	for _, tc := range []struct{ marker, want string }{
		{" dump --socket ", "dump\n--socket\n" + socket + "\n"},
		{" queue list --socket ", "queue\nlist\n--socket\n" + socket + "\n"},
		{"export KUBECONFIG=", ""},
	} {
		var line string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, tc.marker) {
				line = strings.TrimSpace(l)
			}
		}
		if line == "" {
			t.Fatalf("no line with %q:\n%s", tc.marker, out.String())
		}
		cmd := exec.Command("/bin/sh", "-c", line+` && echo "$KUBECONFIG"`)
		cmd.Dir, cmd.Env = t.TempDir(), []string{"PATH=/usr/bin:/bin"}
		got, err := cmd.CombinedOutput()
		if tc.want == "" {
			tc.want = filepath.Join(dir, "kubeconfig") + "\n"
		} else {
			tc.want += "\n" // $KUBECONFIG is empty
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %v, output %q, want %q", line, err, got, tc.want)
		}
	}
}
