package testenv_test

import (
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

// hack/test-controlplane.sh gives the command a control plane with the
// CRDs installed through GADGETPM_TEST_KUBECONFIG, passes the command's
// exit status on, and stops the control plane and removes its files when
// the command fails.
func TestControlPlaneScriptStopsItWhenTheCommandFails(t *testing.T) {
	tmp := t.TempDir()
	seen := filepath.Join(t.TempDir(), "seen")
	args := []string{"-ldflags=-s"}
	if testenv.Race {
		args = append(args, testenv.RaceFlags()...)
	}
	// the command copies the kubeconfig it was given, then fails
	args = append(args, "--", "sh", "-c", `cp "$GADGETPM_TEST_KUBECONFIG" "$1" && exit 3`, "sh", seen)
	cmd := exec.Command(filepath.Join(env.RepoRoot, "hack", "test-controlplane.sh"), args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("exit: %v, want the command's status 3\n%s", err, out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", seen)
	if err != nil {
		t.Fatalf("the command got no usable kubeconfig: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CRDs installed") {
		t.Errorf("the output does not say the CRDs were installed:\n%s", out)
	}
	// the script returns once the control plane stopped
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("the control plane at %s still answers after the script ended", u.Host)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the script left %v in its temporary directory", left)
	}
}
