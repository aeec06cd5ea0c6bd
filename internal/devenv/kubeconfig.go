package devenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig for cfg (mode 0600) at path. It
// replaces an existing file only when an earlier run wrote it, so a
// mistyped --kubeconfig-out never clobbers someone's ~/.kube/config.
func writeKubeconfig(path string, cfg *rest.Config) error {
	if err := checkOurs(path); err != nil {
		return err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[userName] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[userName] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kc.Contexts[userName] = &clientcmdapi.Context{Cluster: userName, AuthInfo: userName, Namespace: DefaultNamespace}
	kc.CurrentContext = userName
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// removeKubeconfig removes the kubeconfig once its server is gone, unless
// something else replaced it meanwhile.
func removeKubeconfig(path string) error {
	if checkOurs(path) != nil {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove kubeconfig %s: %w", path, err)
	}
	return nil
}

// checkOurs returns nil when path does not exist or holds a kubeconfig
// whose only context is ours.
func checkOurs(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check kubeconfig %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("kubeconfig path %s is a directory: pass --kubeconfig-out with a file path", path)
	}
	kc, err := clientcmd.LoadFromFile(path)
	if err == nil && len(kc.Contexts) == 1 && kc.Contexts[userName] != nil {
		return nil
	}
	return fmt.Errorf("refusing to overwrite %s: it was not written by gadgetpm dev; remove it or pass --kubeconfig-out with another path", path)
}
