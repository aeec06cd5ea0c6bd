// Package streamservertest helps tests read Trace streams the way users
// do: over TLS, with a service account's token. Test code only.
package streamservertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver"
)

// Reader creates service account ns/name and a Role and RoleBinding
// that let it get traces in ns (what the chart's gadgetpm-trace-viewer
// grants), and returns a token of it.
func Reader(t testing.TB, admin *rest.Config, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(admin)
	meta := metav1.ObjectMeta{Namespace: ns, Name: name}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{gadgetv1alpha1.GroupVersion.Group}, Resources: []string{"traces"}, Verbs: []string{"get"},
	}}}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: meta,
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return Token(t, admin, ns, name)
}

// Token returns a token of service account ns/name (TokenRequest).
func Token(t testing.TB, admin *rest.Config, ns, name string) string {
	t.Helper()
	tr, err := kubernetes.NewForConfigOrDie(admin).CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of service account %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// CertDir writes a certificate for 127.0.0.1 and localhost into a
// temporary directory, as streamserver.Options.CertDir wants it, and
// returns the directory and a pool that verifies the certificate.
func CertDir(t testing.TB) (string, *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, streamserver.CertFile), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, streamserver.KeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate in the generated PEM")
	}
	return dir, pool
}

// Client returns an HTTP client that trusts only roots.
func Client(roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
}

// Serve starts a streamserver.Server of handler on 127.0.0.1 with a
// certificate of CertDir, stopped when the test ends, and returns its
// base URL ("https://127.0.0.1:<port>") and a client that verifies it.
// opts' BindAddress and CertDir are set here.
func Serve(t testing.TB, admin *rest.Config, handler http.Handler, opts streamserver.Options) (string, *http.Client) {
	t.Helper()
	dir, roots := CertDir(t)
	opts.BindAddress, opts.CertDir = "127.0.0.1:0", dir
	srv, err := streamserver.New(admin, handler, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := Client(roots)
	t.Cleanup(c.CloseIdleConnections)
	return "https://" + Start(t, srv), c
}

// Start runs srv until the test ends, checks that it stops without an
// error, and returns its address once it listens.
func Start(t testing.TB, srv *streamserver.Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stream server: %v", err)
		}
	})
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	defer acancel()
	addr, err := srv.Addr(actx)
	if err != nil || addr == "" {
		t.Fatalf("stream server did not listen: %q, %v", addr, err)
	}
	return addr
}

// Get sends GET url with token as bearer token ("" sends none).
func Get(ctx context.Context, c *http.Client, url, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return c.Do(req)
}
