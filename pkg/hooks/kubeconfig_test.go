package hooks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/toolcache"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
)

// kubectl finds the kubectl hack/setup-envtest.sh builds beside
// kube-apiserver.
func kubectl(t *testing.T) string {
	t.Helper()
	isKubectl := func(dir string) bool {
		fi, err := os.Stat(filepath.Join(dir, "kubectl"))
		return err == nil && fi.Mode()&0o111 != 0
	}
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" || !isKubectl(dir) {
		if root, err := toolcache.Dir(); err == nil {
			dir = toolcache.Newest(root, isKubectl)
		}
	}
	if dir == "" || !isKubectl(dir) {
		t.Fatal("no kubectl beside kube-apiserver: run hack/setup-envtest.sh (it builds kubectl) and set KUBEBUILDER_ASSETS to the directory it prints")
	}
	return filepath.Join(dir, "kubectl")
}

// apiHook records what a hook's kubectl can do: who it is, whether it may
// list Secrets cluster-wide, its environment and its kubeconfig's mode.
const apiHook = `env > "$OUT/env"
if [ -n "${KUBECONFIG:-}" ]; then stat -c %a "$KUBECONFIG" > "$OUT/mode"; fi
"$KUBECTL" auth whoami -o jsonpath='{.status.userInfo.username}' > "$OUT/whoami"
if "$KUBECTL" get secrets --all-namespaces > /dev/null 2> "$OUT/secrets"; then echo allowed >> "$OUT/secrets"; fi`

// A hook run with Credentials reaches the API server as the hooks'
// service account only: kubectl says who it is, it may not list Secrets
// cluster-wide, its KUBECONFIG is a file of its run directory only it may
// read, and nothing of the operator's credentials (KUBECONFIG,
// KUBERNETES_SERVICE_HOST/PORT) is in its environment. Without
// Credentials (--hook-service-account="") it runs with the operator's. A
// hook's own Credentials (its package's service account) take precedence
// over the Runner's.
func TestRunCredentials(t *testing.T) {
	ns := env.Namespace(t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: hookcreds.DefaultServiceAccount}}
	if err := env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	issuer, err := hookcreds.New(hookcreds.Options{Config: env.Config, Namespace: ns, ServiceAccount: hookcreds.DefaultServiceAccount})
	if err != nil {
		t.Fatal(err)
	}
	tenant := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"}}
	if err := env.Client.Create(context.Background(), tenant); err != nil {
		t.Fatal(err)
	}
	tenantIssuer, err := hookcreds.New(hookcreds.Options{Config: env.Config, Namespace: ns, ServiceAccount: "tenant"})
	if err != nil {
		t.Fatal(err)
	}
	operatorKubeconfig := env.WriteKubeconfig(t)
	for _, tc := range []struct {
		name        string
		creds       Credentials
		hookCreds   Credentials
		user        string // "" for the operator's own
		secrets     string // "allowed", or what the error says
		ownConfigIn bool   // KUBECONFIG is in the run directory
	}{
		{"own service account", issuer, nil, "system:serviceaccount:" + ns + ":gadgetpm-hooks", "forbidden", true},
		{"package's service account", issuer, tenantIssuer, "system:serviceaccount:" + ns + ":tenant", "forbidden", true},
		{"package's service account, no hooks' account", nil, tenantIssuer, "system:serviceaccount:" + ns + ":tenant", "forbidden", true},
		{"operator's credentials", nil, nil, "", "allowed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			dir := newPackage(t, map[string]string{"hooks/h": bashHook(trivialConfig, apiHook)})
			h := loadHook(t, dir, "h")
			h.Credentials = tc.hookCreds
			r := NewRunner(RunnerOptions{Credentials: tc.creds, Env: Env{
				// What the operator's environment holds in a cluster
				// and out of one.
				Kube:    map[string]string{"KUBECONFIG": operatorKubeconfig, "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
				Package: map[string]string{"OUT": out, "KUBECTL": kubectl(t)},
			}})
			res, err := r.Run(context.Background(), h, RunInput{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			read := func(name string) string {
				b, _ := os.ReadFile(filepath.Join(out, name))
				return strings.TrimSpace(string(b))
			}
			vars := map[string]string{}
			for _, l := range strings.Split(read("env"), "\n") {
				k, v, _ := strings.Cut(l, "=")
				vars[k] = v
			}
			user := read("whoami")
			switch {
			case tc.user != "" && user != tc.user:
				t.Errorf("the hook's kubectl is %q, want %q", user, tc.user)
			case tc.user == "" && (user == "" || strings.HasPrefix(user, "system:serviceaccount:")):
				t.Errorf("the hook's kubectl is %q, want the operator's identity", user)
			}
			if got := read("secrets"); !strings.Contains(got, tc.secrets) {
				t.Errorf("listing Secrets cluster-wide: %q, want %q", got, tc.secrets)
			}
			if !tc.ownConfigIn {
				return
			}
			runDir := filepath.Dir(vars["BINDING_CONTEXT_PATH"])
			if vars["KUBECONFIG"] != filepath.Join(runDir, "kubeconfig") {
				t.Errorf("KUBECONFIG=%q, want the run directory's kubeconfig", vars["KUBECONFIG"])
			}
			if m := read("mode"); m != "400" {
				t.Errorf("the kubeconfig's mode is %s, want 400", m)
			}
			for _, k := range []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"} {
				if v, ok := vars[k]; ok {
					t.Errorf("the operator's %s=%s reached the hook", k, v)
				}
			}
			if _, err := os.Stat(vars["KUBECONFIG"]); !os.IsNotExist(err) {
				t.Errorf("the kubeconfig outlived the run: %v", err)
			}
		})
	}
}

// When no credentials can be had the hook does not run, and the error
// names the hook and the service account.
func TestRunWithoutCredentialsDoesNotStart(t *testing.T) {
	ns := env.Namespace(t)
	issuer, err := hookcreds.New(hookcreds.Options{Config: env.Config, Namespace: ns, ServiceAccount: "missing"})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	dir := newPackage(t, map[string]string{"hooks/h": bashHook(trivialConfig, `touch "$OUT/ran"`)})
	h := loadHook(t, dir, "h")
	r := NewRunner(RunnerOptions{Credentials: issuer, Env: Env{Package: map[string]string{"OUT": out}}})
	_, err = r.Run(context.Background(), h, RunInput{})
	if err == nil {
		t.Fatal("the run started without credentials")
	}
	for _, w := range []string{"run hook h", "serviceaccount " + ns + "/missing", "not found", "--hook-service-account"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "ran")); !os.IsNotExist(err) {
		t.Errorf("the hook ran: %v", err)
	}
}
