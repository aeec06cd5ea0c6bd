package hookcreds

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
)

// DefaultServiceAccount is the account hooks run as unless told otherwise.
const DefaultServiceAccount = "gadgetpm-hooks"

// DefaultExpiry is the lifetime requested for each token. It is also the
// shortest the TokenRequest API accepts.
const DefaultExpiry = 10 * time.Minute

// renewNum/renewDen is the part of a token's lifetime after which the
// next caller gets a new one, so a hook always starts with at least a
// fifth of the lifetime left.
const renewNum, renewDen = 8, 10

// kubeconfigName names the cluster, user and context of a rendered
// kubeconfig.
const kubeconfigName = "gadgetpm-hook"

// Options configure New.
type Options struct {
	// Config reaches the API server. Tokens are requested with it, and
	// rendered kubeconfigs take its server URL, CA and TLS server name
	// (never its credentials). Required.
	Config *rest.Config
	// Namespace and ServiceAccount name the account hooks run as; the
	// namespace is also the kubeconfig's default namespace. Required.
	Namespace, ServiceAccount string
	// Expiry is the lifetime requested for each token; default
	// DefaultExpiry, which is also the minimum.
	Expiry time.Duration
	// Logger; default a discarding one.
	Logger logr.Logger
}

// Issuer hands out kubeconfigs carrying a token of one service account.
// It is safe for concurrent use: callers share the current token, and
// one of them at a time renews it.
type Issuer struct {
	opts   Options
	tokens corev1client.ServiceAccountInterface
	// clock is a test seam for the renewal rule.
	clock clock.PassiveClock

	// sem holds the right to read or renew the token (a one-slot
	// channel rather than a mutex, so a caller waiting for a renewal in
	// progress can give up when its context ends).
	sem chan struct{}
	// token and renewAt are the current token and when to replace it;
	// guarded by sem.
	token   string
	renewAt time.Time
}

// New checks opts and returns an Issuer. It makes no request: the first
// Kubeconfig call issues the first token.
func New(opts Options) (*Issuer, error) {
	if opts.Config == nil || opts.Namespace == "" || opts.ServiceAccount == "" {
		return nil, errors.New("hook credentials: Config, Namespace and ServiceAccount are required")
	}
	if opts.Expiry == 0 {
		opts.Expiry = DefaultExpiry
	}
	if opts.Expiry < DefaultExpiry {
		return nil, fmt.Errorf("hook token expiry %s is shorter than the TokenRequest API's minimum of %s: set --hook-token-expiry to %s or more", opts.Expiry, DefaultExpiry, DefaultExpiry)
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	c, err := corev1client.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("hook credentials: create client: %w", err)
	}
	return &Issuer{
		opts: opts, tokens: c.ServiceAccounts(opts.Namespace), clock: clock.RealClock{},
		sem: make(chan struct{}, 1),
	}, nil
}

// Subject is the user name the API server sees for the tokens:
// system:serviceaccount:<namespace>:<name>.
func (i *Issuer) Subject() string {
	return "system:serviceaccount:" + i.opts.Namespace + ":" + i.opts.ServiceAccount
}

// Token returns the current token, first issuing a new one through the
// TokenRequest API when there is none or 80% of its lifetime has passed.
// The error names the service account, what failed and what to do.
func (i *Issuer) Token(ctx context.Context) (string, error) {
	select {
	case i.sem <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("issue a token for serviceaccount %s/%s: %w", i.opts.Namespace, i.opts.ServiceAccount, ctx.Err())
	}
	defer func() { <-i.sem }()
	if i.token != "" && i.clock.Now().Before(i.renewAt) {
		return i.token, nil
	}
	issued := i.clock.Now()
	tr, err := i.tokens.CreateToken(ctx, i.opts.ServiceAccount, &authenticationv1.TokenRequest{
		// No audiences: the API server's own, so the token authenticates
		// to it like a pod's.
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(i.opts.Expiry / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", i.issueError(err)
	}
	// The server may grant less than asked; never count on more.
	life := min(tr.Status.ExpirationTimestamp.Sub(issued), i.opts.Expiry)
	i.token, i.renewAt = tr.Status.Token, issued.Add(life*renewNum/renewDen)
	i.opts.Logger.V(1).Info("issued a token for hooks", "serviceAccount", i.opts.Namespace+"/"+i.opts.ServiceAccount,
		"expires", tr.Status.ExpirationTimestamp.Time, "renewAt", i.renewAt)
	return i.token, nil
}

// issueError says which account a failed TokenRequest was for and, for
// the failures an administrator fixes, what to do.
func (i *Issuer) issueError(err error) error {
	hint := ""
	switch {
	case apierrors.IsNotFound(err):
		hint = ": create it or set --hook-service-account"
	case apierrors.IsForbidden(err):
		hint = ": the operator needs create on serviceaccounts/token for it (the chart's Role grants it)"
	}
	return fmt.Errorf("issue a token for serviceaccount %s/%s: %w%s", i.opts.Namespace, i.opts.ServiceAccount, err, hint)
}

// Kubeconfig renders a kubeconfig that reaches the operator's API server
// as the service account, with the current token inline and the CA
// inline (read from Config's CA file when it names one, since a hook may
// not see that file). It satisfies pkg/hooks' Credentials.
func (i *Issuer) Kubeconfig(ctx context.Context) ([]byte, error) {
	token, err := i.Token(ctx)
	if err != nil {
		return nil, err
	}
	cfg := i.opts.Config
	server, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("hook kubeconfig: server URL: %w", err)
	}
	cluster := &clientcmdapi.Cluster{Server: server.String(), TLSServerName: cfg.ServerName, InsecureSkipTLSVerify: cfg.Insecure}
	if !cfg.Insecure {
		cluster.CertificateAuthorityData = cfg.CAData
		if len(cluster.CertificateAuthorityData) == 0 && cfg.CAFile != "" {
			if cluster.CertificateAuthorityData, err = os.ReadFile(cfg.CAFile); err != nil {
				return nil, fmt.Errorf("hook kubeconfig: read the API server's CA: %w", err)
			}
		}
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[kubeconfigName] = cluster
	kc.AuthInfos[kubeconfigName] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: kubeconfigName, Namespace: i.opts.Namespace}
	kc.CurrentContext = kubeconfigName
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("hook kubeconfig: encode: %w", err)
	}
	return b, nil
}

func ptr[T any](v T) *T { return &v }
