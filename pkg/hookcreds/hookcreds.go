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

	"github.com/gadgetpm/gadgetpm/pkg/identity"
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
	// Owner names, in errors, the GadgetPackage whose own account this is
	// ("GadgetPackage <namespace>/<name>"), so that a failure says which
	// package to fix and how. Empty: the account of the hooks of every
	// package without one of its own (--hook-service-account).
	Owner string
}

// setDefaults applies the defaults of Expiry and Logger and checks Expiry.
func (o *Options) setDefaults() error {
	if o.Expiry == 0 {
		o.Expiry = DefaultExpiry
	}
	if o.Expiry < DefaultExpiry {
		return fmt.Errorf("hook token expiry %s is shorter than the TokenRequest API's minimum of %s: set --hook-token-expiry to %s or more", o.Expiry, DefaultExpiry, DefaultExpiry)
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	return nil
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
	if err := opts.setDefaults(); err != nil {
		return nil, err
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
	case apierrors.IsNotFound(err) && i.opts.Owner != "":
		err = accountNotFound{err}
		hint = fmt.Sprintf(": the account %s acts as does not exist: create it in namespace %s, or set spec.serviceAccountName of %s (default --default-service-account) to one that exists",
			i.opts.Owner, i.opts.Namespace, i.opts.Owner)
	case apierrors.IsNotFound(err):
		hint = ": create it or set --hook-service-account"
	case apierrors.IsForbidden(err) && i.opts.Owner != "":
		hint = fmt.Sprintf(": the operator needs create on serviceaccounts/token in namespace %s (the chart grants it with rbac.packageResources or rbac.packageServiceAccounts)", i.opts.Namespace)
	case apierrors.IsForbidden(err):
		hint = ": the operator needs create on serviceaccounts/token for it (the chart's Role grants it)"
	}
	who := ""
	if i.opts.Owner != "" {
		who = " of " + i.opts.Owner
	}
	return fmt.Errorf("issue a token for serviceaccount %s/%s%s: %w%s", i.opts.Namespace, i.opts.ServiceAccount, who, err, hint)
}

// accountNotFound is the API server's NotFound for a package's own
// account; it also matches identity.ErrServiceAccountNotFound, which
// gives the package's condition its reason.
type accountNotFound struct{ err error }

func (e accountNotFound) Error() string   { return e.err.Error() }
func (e accountNotFound) Unwrap() []error { return []error{e.err, identity.ErrServiceAccountNotFound} }

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

// Accounts makes Issuers for packages' own service accounts, all with
// the same Config, Expiry and Logger. It keeps no state: each Issuer it
// returns has its own token.
type Accounts struct {
	opts Options
}

// NewAccounts checks opts (Namespace, ServiceAccount and Owner are
// ignored) and returns Accounts. It makes no request.
func NewAccounts(opts Options) (*Accounts, error) {
	opts.Namespace, opts.ServiceAccount, opts.Owner = "", "", ""
	if opts.Config == nil {
		return nil, errors.New("hook credentials: Config is required")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &Accounts{opts: opts}, nil
}

// Issuer returns an Issuer of tokens for service account namespace/name,
// acting for owner ("GadgetPackage <namespace>/<name>", named in its
// errors).
func (a *Accounts) Issuer(namespace, name, owner string) (*Issuer, error) {
	opts := a.opts
	opts.Namespace, opts.ServiceAccount, opts.Owner = namespace, name, owner
	return New(opts)
}

func ptr[T any](v T) *T { return &v }
