package toolcache

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// EnvDir overrides the cache root; hack/setup-envtest.sh, hack/setup-helm.sh
// and the Makefile read the same variable.
const EnvDir = "GADGETPM_BIN"

// Dir returns the cache root: $GADGETPM_BIN when set, else
// $XDG_CACHE_HOME/gadgetpm, else $HOME/.cache/gadgetpm (the scripts
// resolve it the same way).
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the tool cache: %w (set %s to a writable directory)", err, EnvDir)
	}
	return filepath.Join(base, "gadgetpm"), nil
}

// K8sDir is where the control plane binaries are kept, one directory per
// version and platform (<Dir>/k8s/<version>-<os>-<arch>).
func K8sDir(root string) string { return filepath.Join(root, "k8s") }

// Newest returns the newest version directory under K8sDir(root) for which
// ok is true, or "" when there is none. Directories sort by name, so a
// newer Kubernetes version comes first.
func Newest(root string, ok func(dir string) bool) string {
	dirs, _ := filepath.Glob(filepath.Join(K8sDir(root), "*"))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if ok(d) {
			return d
		}
	}
	return ""
}
