package packagerepository

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// recorder is a real HTTP server in front of handler that records the
// requests it gets and their Authorization headers.
type recorder struct {
	mu       sync.Mutex
	requests []string // guarded by mu: "<path> authorization=<header>"
}

func (rec *recorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.requests = append(rec.requests, r.URL.Path+" authorization="+r.Header.Get("Authorization"))
		rec.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (rec *recorder) seen() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.requests...)
}

func (rec *recorder) authorized() []string {
	var out []string
	for _, r := range rec.seen() {
		if !strings.HasSuffix(r, "authorization=") {
			out = append(out, r)
		}
	}
	return out
}

func createSecret(t *testing.T, ns, name string, data map[string][]byte) {
	t.Helper()
	if err := env.Client.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data}); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsOnlyFromTheClusterResourceNamespace: a PackageRepository
// naming a Secret of another namespace (another tenant's credentials) is
// refused — Ready=False and Stalled with SecretNamespaceNotAllowed, a
// Warning Event, one error log line — before the Secret is read, so its
// credentials never reach the repository's server; a repository whose
// secretRef leaves the namespace empty reads the cluster resource
// namespace and syncs beside it.
func TestSecretsOnlyFromTheClusterResourceNamespace(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	allowed, tenant := env.Namespace(t), env.Namespace(t)
	creds := map[string][]byte{"username": []byte("alice"), "password": []byte("s3cret")}
	createSecret(t, allowed, "creds", creds)
	createSecret(t, tenant, "creds", creds)
	createSecret(t, tenant, "keys", map[string][]byte{"pubring.gpg": []byte("ring")})

	var borrowed, own recorder
	borrowSrv, borrowCA := serveTLS(t, borrowed.wrap(fileHandler(out, "alice", "s3cret")))
	ownSrv, ca := serveTLS(t, own.wrap(fileHandler(out, "alice", "s3cret")))

	var logs testlog.Lines
	startController(t, logs.Logger(0), repoaccess.Policy{ClusterResourceNamespace: allowed})

	interval := metav1.Duration{Duration: time.Second}
	borrow := newRepo(t, v1alpha1.PackageRepositorySpec{URL: borrowSrv.URL, CABundle: borrowCA, Interval: interval,
		SecretRef: &v1alpha1.SecretReference{Name: "creds", Namespace: tenant}})
	keyring := newRepo(t, v1alpha1.PackageRepositorySpec{URL: borrowSrv.URL, CABundle: borrowCA, Interval: interval,
		Verify: &v1alpha1.Verification{Mode: v1alpha1.VerifyAlways, KeyringSecretRef: &v1alpha1.SecretReference{Name: "keys", Namespace: tenant}}})
	ownRepo := newRepo(t, v1alpha1.PackageRepositorySpec{URL: ownSrv.URL, CABundle: ca, Interval: interval,
		SecretRef: &v1alpha1.SecretReference{Name: "creds"}})

	for _, tc := range []struct {
		pr    *v1alpha1.PackageRepository
		field string
	}{{borrow, "spec.secretRef"}, {keyring, "spec.verify.keyringSecretRef"}} {
		want := []string{"PackageRepository " + tc.pr.Name, tc.field + `.namespace is "` + tenant + `"`, `cluster resource namespace "` + allowed + `"`}
		got := waitRepo(t, tc.pr.Name, "Ready=False "+repoaccess.ReasonSecretNamespaceNotAllowed, func(pr *v1alpha1.PackageRepository) bool {
			c := ready(pr)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == repoaccess.ReasonSecretNamespaceNotAllowed
		})
		for _, w := range want {
			if c := ready(got); !strings.Contains(c.Message, w) {
				t.Errorf("%s: Ready message %q does not say %q", tc.pr.Name, c.Message, w)
			}
		}
		if s := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionStalled); s == nil || s.Status != metav1.ConditionTrue || s.Reason != repoaccess.ReasonSecretNamespaceNotAllowed {
			t.Errorf("%s: Stalled = %+v, want True %s", tc.pr.Name, s, repoaccess.ReasonSecretNamespaceNotAllowed)
		}
		// Events of cluster-scoped objects land in "default".
		env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: metav1.NamespaceDefault, Kind: "PackageRepository", Name: tc.pr.Name,
			Type: corev1.EventTypeWarning, Reason: repoaccess.ReasonSecretNamespaceNotAllowed, Parts: want})
		if n := logs.Count("repository refused", `"repository"="`+tc.pr.Name+`"`, repoaccess.ReasonSecretNamespaceNotAllowed, tc.field); n != 1 {
			t.Errorf("%d error lines for %s, want 1:\n%s", n, tc.pr.Name, strings.Join(logs.Get(), "\n"))
		}
	}

	// The other repository goes on, with the Secret of the cluster
	// resource namespace.
	waitRepo(t, ownRepo.Name, "Ready=True", func(pr *v1alpha1.PackageRepository) bool {
		c := ready(pr)
		return c != nil && c.Status == metav1.ConditionTrue && pr.Status.PackageCount == 1
	})
	if len(own.authorized()) == 0 {
		t.Errorf("the repository of the cluster resource namespace's Secret sent no credentials: %q", own.seen())
	}
	// Its syncs (every second) outnumber the refused repositories'
	// chances to send anything: none of their requests was ever made.
	waitRepo(t, ownRepo.Name, "a later sync", func(pr *v1alpha1.PackageRepository) bool { return len(own.seen()) >= 3 })
	if seen := borrowed.seen(); len(seen) != 0 {
		t.Errorf("the refused repositories' server got requests %q; want none (the borrowed Secret must never be sent)", seen)
	}
}

// TestPlainHTTPNeedsInsecureAndNeverCarriesCredentials: an http:// URL
// needs spec.insecure; credentials are never sent over plain HTTP, even
// with spec.insecure, to an http:// repository or an oci:// registry.
// Each refusal names the repository's field and sends nothing.
func TestPlainHTTPNeedsInsecureAndNeverCarriesCredentials(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	ns := env.Namespace(t)
	createSecret(t, ns, "creds", map[string][]byte{"username": []byte("alice"), "password": []byte("s3cret")})
	secretRef := &v1alpha1.SecretReference{Name: "creds"}
	r := &Reconciler{Client: env.Client, Access: repoaccess.Policy{ClusterResourceNamespace: ns}}

	tests := []struct {
		name   string
		spec   func(url string) v1alpha1.PackageRepositorySpec
		oci    bool
		reason string
		want   []string
		sent   bool
	}{
		{"http without insecure", func(u string) v1alpha1.PackageRepositorySpec { return v1alpha1.PackageRepositorySpec{URL: u} },
			false, repoaccess.ReasonInsecureNotAllowed, []string{"spec.url http://", "is plain HTTP", "spec.insecure: true"}, false},
		{"http with insecure", func(u string) v1alpha1.PackageRepositorySpec {
			return v1alpha1.PackageRepositorySpec{URL: u, Insecure: true}
		}, false, v1alpha1.ReasonSucceeded, []string{"1 package(s)"}, true},
		{"http with insecure and credentials", func(u string) v1alpha1.PackageRepositorySpec {
			return v1alpha1.PackageRepositorySpec{URL: u, Insecure: true, SecretRef: secretRef}
		}, false, repoaccess.ReasonCredentialsOverPlainHTTP, []string{"spec.secretRef: credentials are never sent over plain HTTP", "spec.insecure: true"}, false},
		{"oci over plain HTTP with credentials", func(u string) v1alpha1.PackageRepositorySpec {
			return v1alpha1.PackageRepositorySpec{URL: u, Insecure: true, SecretRef: secretRef}
		}, true, repoaccess.ReasonCredentialsOverPlainHTTP, []string{"spec.secretRef: credentials are never sent over plain HTTP", "oci://"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			srv := httptest.NewServer(rec.wrap(fileHandler(out, "", "")))
			t.Cleanup(srv.Close)
			url := srv.URL
			if tt.oci {
				url = "oci://" + strings.TrimPrefix(srv.URL, "http://") + "/gadgets"
			}
			pr := newRepo(t, tt.spec(url))
			got, res := reconcileOnce(t, r, pr)
			c := ready(got)
			if c == nil || c.Reason != tt.reason {
				t.Fatalf("Ready = %+v, want reason %s", c, tt.reason)
			}
			for _, w := range append(tt.want, pr.Name) {
				if tt.reason == v1alpha1.ReasonSucceeded && w == pr.Name {
					continue
				}
				if !strings.Contains(c.Message, w) {
					t.Errorf("Ready message %q does not say %q", c.Message, w)
				}
			}
			if a := rec.authorized(); len(a) != 0 {
				t.Errorf("credentials went over plain HTTP: %q", a)
			}
			if seen := rec.seen(); tt.sent != (len(seen) > 0) {
				t.Errorf("requests %q; want any: %v", seen, tt.sent)
			}
			if tt.reason != v1alpha1.ReasonSucceeded && res.RequeueAfter != 0 {
				t.Errorf("a refused repository is retried after %v; it waits for its spec to change", res.RequeueAfter)
			}
		})
	}
}

// startController runs the controller in a manager of its own, logging
// to logger, until the test ends.
func startController(t *testing.T, logger logr.Logger, access repoaccess.Policy) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, Logger: logger,
		Cache: env.CacheOptions(cache.Options{}),
		// the tests of this package each run a controller of the same name
		Controller: config.Controller{SkipNameValidation: new(true)}})
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("gadgetpm"), Access: access}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func waitRepo(t *testing.T, name, what string, cond func(*v1alpha1.PackageRepository) bool) *v1alpha1.PackageRepository {
	t.Helper()
	return eventually.Value(t, 60*time.Second, "PackageRepository "+name+": "+what, func() (*v1alpha1.PackageRepository, error) {
		var pr v1alpha1.PackageRepository
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &pr); err != nil {
			return nil, err
		}
		if !cond(&pr) {
			return nil, fmt.Errorf("status %+v", pr.Status)
		}
		return &pr, nil
	})
}
