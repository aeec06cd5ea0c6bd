package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// fileKubeconfig is the run's kubeconfig inside its run directory.
const fileKubeconfig = "kubeconfig"

// Credentials give hook runs API credentials of their own instead of the
// operator's (pkg/hookcreds issues them for a service account).
type Credentials interface {
	// Kubeconfig returns a kubeconfig for one run. An error names what
	// failed and what to do; the run does not start.
	Kubeconfig(ctx context.Context) ([]byte, error)
}

// kubeEnv returns the API part of a run of h's environment. Without
// credentials (h's own, else the Runner's) it is the Env's Kube, as
// before. With them it is only
// KUBECONFIG, naming a kubeconfig written into dir that only the run's
// owner can read: nothing of the operator's KUBECONFIG or
// KUBERNETES_SERVICE_HOST/PORT reaches the hook (kubectl would fall back
// to the in-cluster variables).
func (r *Runner) kubeEnv(ctx context.Context, h *Hook, dir string, kube map[string]string) (map[string]string, error) {
	creds := h.Credentials
	if creds == nil {
		creds = r.opts.Credentials
	}
	if creds == nil {
		return kube, nil
	}
	kc, err := creds.Kubeconfig(ctx)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fileKubeconfig)
	if err := writeOwnedLike(dir, path, kc, 0o400); err != nil {
		return nil, fmt.Errorf("write %s: %w", envKubeconfig, err)
	}
	return map[string]string{envKubeconfig: path}, nil
}

// writeOwnedLike writes a new file at path with mode, owned by the owner
// of dir: when the run directory belongs to the hook's user, so does the
// file, and a read-only mode still lets the hook read it.
func writeOwnedLike(dir, path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return os.Chown(path, int(st.Uid), int(st.Gid))
	}
	return nil
}
