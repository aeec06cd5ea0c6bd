package trace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// kubectlPath finds the kubectl that hack/setup-envtest.sh builds next to
// kube-apiserver.
func kubectlPath(t *testing.T) string {
	t.Helper()
	dirs := []string{os.Getenv("KUBEBUILDER_ASSETS")}
	matches, _ := filepath.Glob(filepath.Join(env.RepoRoot, "hack", "bin", "k8s", "*", "kubectl"))
	for _, m := range matches {
		dirs = append(dirs, filepath.Dir(m))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "kubectl")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatal("no kubectl next to kube-apiserver: run hack/setup-envtest.sh (it builds kubectl once) and set KUBEBUILDER_ASSETS to the directory it prints")
	return ""
}

// docCommands returns the commands of the kubectl flow in docs/traces.md:
// each line starting with kubectl, a heredoc up to its EOF included.
func docCommands(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.RepoRoot, "docs", "traces.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- kubectl-flow -->")
	block, _, ok2 := strings.Cut(rest, "<!-- /kubectl-flow -->")
	if !ok || !ok2 {
		t.Fatal("docs/traces.md has no <!-- kubectl-flow --> block")
	}
	block = strings.TrimSpace(block)
	block = strings.TrimPrefix(block, "```sh")
	block = strings.TrimSuffix(block, "```")
	var cmds []string
	var cur []string
	heredoc := false
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		switch {
		case heredoc:
			cur = append(cur, line)
			if line == "EOF" {
				heredoc = false
				cmds = append(cmds, strings.Join(cur, "\n"))
				cur = nil
			}
		case strings.HasPrefix(line, "kubectl "):
			if strings.Contains(line, "<<EOF") {
				heredoc, cur = true, []string{line}
				continue
			}
			cmds = append(cmds, line)
		case strings.TrimSpace(line) == "":
		default:
			t.Fatalf("docs/traces.md flow: unexpected line %q", line)
		}
	}
	return cmds
}

// TestKubectlFlow runs the documented flow with the real kubectl against
// the test API server, command by command, as a user types it.
func TestKubectlFlow(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	kubectl := kubectlPath(t)
	kubeconfig := env.WriteKubeconfig(t)
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gadget"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// the documented kubectl apply creates a Trace of no shard
	startNode(t, "worker-1", nodeOptions{unsharded: true})
	runningPackage(t, "gadget", "trace-exec", "trace-exec")
	runEvery(t, marker(t, "gpmkubectl"))

	// run returns what the command prints on stdout, what a user reads
	// or pipes on; stderr only explains a failure.
	run := func(cmd string) string {
		t.Helper()
		c := exec.Command("bash", "-c", cmd)
		c.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+filepath.Dir(kubectl)+":"+os.Getenv("PATH"))
		var stderr strings.Builder
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s%s", cmd, err, out, stderr.String())
		}
		return string(out)
	}
	// poll runs a read-only command until its output satisfies ok
	poll := func(cmd string, what string, ok func(string) bool) string {
		t.Helper()
		return eventually.Value(t, 60*time.Second, cmd+": "+what, func() (string, error) {
			out := run(cmd)
			if ok(out) {
				return out, nil
			}
			return "", fmt.Errorf("last output:\n%s", out)
		})
	}
	stopped := false
	for _, cmd := range docCommands(t) {
		switch {
		case strings.HasPrefix(cmd, "kubectl get traces"):
			out := poll(cmd, "STATE Started", func(out string) bool {
				for _, l := range strings.Split(out, "\n") {
					if f := strings.Fields(l); len(f) >= 4 && f[0] == "exec" && f[3] == "Started" {
						return true
					}
				}
				return false
			})
			if !strings.Contains(out, "STATE") {
				t.Fatalf("kubectl get traces shows no STATE column:\n%s", out)
			}
			// events of the running gadget before it is stopped
			poll("kubectl get trace -n gadget exec -o jsonpath='{.status.eventCount}'", "events", func(out string) bool {
				return out != "" && out != "0"
			})
		case strings.Contains(cmd, "jsonpath='{.status.output}'"):
			if !stopped {
				t.Fatal("the flow reads the output before stopping")
			}
			out := poll(cmd, "the output of the stopped trace", func(out string) bool {
				state := run("kubectl get trace -n gadget exec -o jsonpath='{.status.state}'")
				return state == "Stopped" && strings.HasPrefix(out, "[")
			})
			var evs []map[string]any
			if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) == 0 {
				t.Fatalf("status.output is not a JSON array of events: %v\n%s", err, out)
			}
		default:
			run(cmd)
			if strings.Contains(cmd, "operation=stop") {
				stopped = true
			}
		}
	}
}
