package hookcreds

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// serviceAccount creates a service account in ns.
func serviceAccount(t *testing.T, ns, name string) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
}

// clientset is a client that authenticates with the kubeconfig.
func clientset(t *testing.T, kubeconfig []byte) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatalf("the rendered kubeconfig does not load: %v\n%s", err, kubeconfig)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// whoami asks the API server who the kubeconfig authenticates as
// (SelfSubjectReview, what `kubectl auth whoami` sends).
func whoami(t *testing.T, kubeconfig []byte) string {
	t.Helper()
	r, err := clientset(t, kubeconfig).AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with the rendered kubeconfig: %v", err)
	}
	return r.Status.UserInfo.Username
}

// countingConfig is the administrator's config with every TokenRequest
// counted.
func countingConfig(n *atomic.Int64) *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
				n.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The kubeconfig authenticates as the service account, carries none of
// the operator's credentials, and lists no Secrets.
func TestKubeconfigAuthenticatesAsTheServiceAccount(t *testing.T) {
	ns := env.Namespace(t)
	serviceAccount(t, ns, DefaultServiceAccount)
	is, err := New(Options{Config: env.Config, Namespace: ns, ServiceAccount: DefaultServiceAccount})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := is.Kubeconfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := "system:serviceaccount:" + ns + ":" + DefaultServiceAccount
	if got := whoami(t, kc); got != want || is.Subject() != want {
		t.Errorf("the kubeconfig authenticates as %q (Subject %q), want %q", got, is.Subject(), want)
	}
	loaded, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range loaded.AuthInfos {
		if a.Token == "" || len(a.ClientCertificateData) > 0 || len(a.ClientKeyData) > 0 || a.ClientCertificate != "" || a.TokenFile != "" || a.Impersonate != "" {
			t.Errorf("user %s of the kubeconfig holds more than a token: %+v", name, a)
		}
	}
	for _, secret := range [][]byte{env.Config.KeyData, env.Config.CertData, []byte(env.Config.BearerToken)} {
		if len(secret) > 0 && (bytes.Contains(kc, secret) || strings.Contains(string(kc), base64.StdEncoding.EncodeToString(secret))) {
			t.Errorf("the kubeconfig holds the operator's credentials:\n%s", kc)
		}
	}
	if ctx := loaded.Contexts[loaded.CurrentContext]; ctx == nil || ctx.Namespace != ns {
		t.Errorf("current context %+v, want namespace %s", ctx, ns)
	}
	if _, err := clientset(t, kc).CoreV1().Secrets("").List(context.Background(), metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("listing Secrets cluster-wide as the hooks' account: err %v, want Forbidden", err)
	}
}

// strangerConfig acts as a user with no rights: an operator that may not
// issue tokens.
func strangerConfig() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "stranger"}
	return cfg
}

// A TokenRequest that fails says for which account, why and what to do;
// so does an expiry below the API's minimum.
func TestIssueErrorsNameTheAccount(t *testing.T) {
	ns := env.Namespace(t)
	serviceAccount(t, ns, "exists")
	stranger := strangerConfig()
	for _, tc := range []struct {
		name string
		cfg  *rest.Config
		sa   string
		want []string
	}{
		{"missing account", env.Config, "nobody", []string{"issue a token for serviceaccount " + ns + "/nobody", `serviceaccounts "nobody" not found`, "create it or set --hook-service-account"}},
		{"operator not allowed", stranger, "exists", []string{"issue a token for serviceaccount " + ns + "/exists", "forbidden", "create on serviceaccounts/token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is, err := New(Options{Config: tc.cfg, Namespace: ns, ServiceAccount: tc.sa})
			if err != nil {
				t.Fatal(err)
			}
			_, err = is.Kubeconfig(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	_, err := New(Options{Config: env.Config, Namespace: ns, ServiceAccount: "exists", Expiry: 5 * time.Minute})
	if err == nil || !strings.Contains(err.Error(), "--hook-token-expiry") || !strings.Contains(err.Error(), "10m0s") {
		t.Errorf("an expiry of 5m: error %v, want one naming --hook-token-expiry and the 10m minimum", err)
	}
}

// Callers share one token until 80% of its lifetime has passed; the next
// caller then gets a new one, issued by the API server, that works too.
// Concurrent first callers cause one TokenRequest.
func TestRenewsAfterFourFifthsOfTheLifetime(t *testing.T) {
	ns := env.Namespace(t)
	serviceAccount(t, ns, DefaultServiceAccount)
	var requests atomic.Int64
	is, err := New(Options{Config: countingConfig(&requests), Namespace: ns, ServiceAccount: DefaultServiceAccount, Expiry: 20 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktesting.NewFakePassiveClock(time.Now())
	is.clock = clock
	ctx := context.Background()

	tokens := make([]string, 8)
	var wg sync.WaitGroup
	for n := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := is.Token(ctx)
			if err != nil {
				t.Error(err)
			}
			tokens[n] = tok
		}()
	}
	wg.Wait()
	first := tokens[0]
	for n, tok := range tokens {
		if tok != first || tok == "" {
			t.Fatalf("concurrent caller %d got another token", n)
		}
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d TokenRequests for %d concurrent first callers, want 1", n, len(tokens))
	}

	start := clock.Now()
	for _, step := range []struct {
		after    time.Duration
		requests int64
		renewed  bool
	}{
		{time.Minute, 1, false},
		{15*time.Minute + 50*time.Second, 1, false}, // 79%
		{16*time.Minute + 10*time.Second, 2, true},  // 81%
	} {
		clock.SetTime(start.Add(step.after))
		kc, err := is.Kubeconfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := is.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := requests.Load(); n != step.requests {
			t.Errorf("after %s: %d TokenRequests, want %d", step.after, n, step.requests)
		}
		if renewed := tok != first; renewed != step.renewed {
			t.Errorf("after %s of a 20m token: renewed %v, want %v", step.after, renewed, step.renewed)
		}
		if !bytes.Contains(kc, []byte(tok)) {
			t.Errorf("after %s: the kubeconfig does not carry the current token", step.after)
		}
		if got := whoami(t, kc); got != is.Subject() {
			t.Errorf("after %s: the kubeconfig authenticates as %q, want %q", step.after, got, is.Subject())
		}
	}
}

// Accounts issue tokens for a package's own service account: the
// kubeconfig authenticates as it, and a failure names the account, the
// package it acts for and what to do.
func TestAccountsIssueForAPackagesAccount(t *testing.T) {
	ns := env.Namespace(t)
	serviceAccount(t, ns, "tenant")
	owner := "GadgetPackage " + ns + "/p"
	stranger := strangerConfig()
	for _, tc := range []struct {
		name string
		cfg  *rest.Config
		sa   string
		want []string // nil: success
	}{
		{"existing account", env.Config, "tenant", nil},
		{"missing account", env.Config, "nobody", []string{"issue a token for serviceaccount " + ns + "/nobody of " + owner, `serviceaccounts "nobody" not found`,
			"the account " + owner + " acts as does not exist: create it in namespace " + ns + ", or set spec.serviceAccountName of " + owner + " (default --default-service-account) to one that exists"}},
		{"operator not allowed", stranger, "tenant", []string{"issue a token for serviceaccount " + ns + "/tenant of " + owner, "forbidden",
			"the operator needs create on serviceaccounts/token in namespace " + ns + " (the chart grants it with rbac.packageResources or rbac.packageServiceAccounts)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAccounts(Options{Config: tc.cfg})
			if err != nil {
				t.Fatal(err)
			}
			is, err := a.Issuer(ns, tc.sa, owner)
			if err != nil {
				t.Fatal(err)
			}
			kc, err := is.Kubeconfig(context.Background())
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got, want := whoami(t, kc), "system:serviceaccount:"+ns+":"+tc.sa; got != want {
					t.Errorf("the kubeconfig authenticates as %q, want %q", got, want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// The package's condition reason comes from it.
			if got, want := errors.Is(err, identity.ErrServiceAccountNotFound), tc.sa == "nobody"; got != want {
				t.Errorf("errors.Is(%v, identity.ErrServiceAccountNotFound) = %v, want %v", err, got, want)
			}
		})
	}
	if _, err := NewAccounts(Options{Config: env.Config, Expiry: 5 * time.Minute}); err == nil || !strings.Contains(err.Error(), "--hook-token-expiry") {
		t.Errorf("Accounts with an expiry of 5m: error %v, want one naming --hook-token-expiry", err)
	}
	if _, err := NewAccounts(Options{}); err == nil {
		t.Error("Accounts without a Config: no error")
	}
}
