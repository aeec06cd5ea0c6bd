package packagerepository

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

var seq int

func newRepo(t *testing.T, spec v1alpha1.PackageRepositorySpec) *v1alpha1.PackageRepository {
	t.Helper()
	seq++
	pr := &v1alpha1.PackageRepository{
		ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + "-" + string(rune('a'+seq%26))},
		Spec:       spec,
	}
	if err := env.Client.Create(context.Background(), pr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
	return pr
}

// reconcileOnce runs one sync and returns the stored object.
func reconcileOnce(t *testing.T, r *Reconciler, pr *v1alpha1.PackageRepository) (*v1alpha1.PackageRepository, reconcile.Result) {
	t.Helper()
	res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKey{Name: pr.Name}})
	if err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.PackageRepository
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: pr.Name}, &got); err != nil {
		t.Fatal(err)
	}
	return &got, res
}

func ready(pr *v1alpha1.PackageRepository) *metav1.Condition {
	return meta.FindStatusCondition(pr.Status.Conditions, v1alpha1.ConditionReady)
}

func serve(t *testing.T, dir, user, pass string) *httptest.Server {
	srv := httptest.NewServer(fileHandler(dir, user, pass))
	t.Cleanup(srv.Close)
	return srv
}

// serveTLS serves h over HTTPS; it also returns the PEM certificate to
// trust (spec.caBundle).
func serveTLS(t *testing.T, h http.Handler) (*httptest.Server, []byte) {
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func fileHandler(dir, user, pass string) http.Handler {
	fs := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); user != "" && (u != user || p != pass) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fs.ServeHTTP(w, r)
	})
}

func TestSyncHTTPRepository(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "execsnoop", Version: "1.0.0"}, packagetest.Source{Name: "execsnoop", Version: "1.1.0"},
		packagetest.Source{Name: "net-base", Version: "2.0.0"})
	srv := serve(t, out, "", "")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &Reconciler{Client: env.Client, now: func() time.Time { return now }}
	pr := newRepo(t, v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true})

	got, res := reconcileOnce(t, r, pr)
	c := ready(got)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonSucceeded || !strings.Contains(c.Message, "2 package(s)") {
		t.Fatalf("Ready = %+v", c)
	}
	index, _ := os.ReadFile(filepath.Join(out, "index.yaml"))
	if got.Status.IndexDigest != "sha256:"+chartrepo.SHA256(index) {
		t.Errorf("indexDigest = %s", got.Status.IndexDigest)
	}
	if got.Status.LastSyncTime == nil || !got.Status.LastSyncTime.Time.Equal(now) {
		t.Errorf("lastSyncTime = %v", got.Status.LastSyncTime)
	}
	if got.Status.PackageCount != 2 || len(got.Status.Packages) != 2 || got.Status.Packages[0].Name != "execsnoop" ||
		strings.Join(got.Status.Packages[0].Versions, ",") != "1.1.0,1.0.0" {
		t.Errorf("packages = %+v", got.Status.Packages)
	}
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
	}
	if res.RequeueAfter != 10*time.Minute {
		t.Errorf("requeue after %v, want the default interval", res.RequeueAfter)
	}

	// The repository disappears: Ready=False, the package list and last
	// sync time stay as they were.
	srv.Close()
	got, res = reconcileOnce(t, r, pr)
	c = ready(got)
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonIndexFailed || !strings.Contains(c.Message, "cannot read "+srv.URL) {
		t.Fatalf("Ready after the repository went away = %+v", c)
	}
	if got.Status.PackageCount != 2 || !got.Status.LastSyncTime.Time.Equal(now) {
		t.Errorf("status lost the last good sync: %+v", got.Status)
	}
	if res.RequeueAfter != time.Minute {
		t.Errorf("retry after %v, want 1m", res.RequeueAfter)
	}
}

// TestSyncFailureIsLoggedOnce: an unreachable repository is one error
// line in the operator log, naming the repository, its URL and the
// reason, however many retries fail the same way.
func TestSyncFailureIsLoggedOnce(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	pr := newRepo(t, v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true})
	var logs testlog.Lines
	ctx := log.IntoContext(context.Background(), logs.Logger(0))
	r := &Reconciler{Client: env.Client}
	for range 3 {
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: pr.Name}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := logs.Count("sync failed", `"repository"="`+pr.Name+`"`, srv.URL, "IndexFailed", "404"); n != 1 {
		t.Fatalf("%d error lines for the failing repository, want 1:\n%s", n, strings.Join(logs.Get(), "\n"))
	}
}

func TestSyncReportsBadRepositories(t *testing.T) {
	good := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	malformed := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	if err := os.WriteFile(filepath.Join(malformed, "index.yaml"), []byte("apiVersion: v1\nentries: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noDigest := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	idx, _ := os.ReadFile(filepath.Join(noDigest, "index.yaml"))
	var kept []string
	for _, l := range strings.Split(string(idx), "\n") {
		if !strings.Contains(l, "digest:") {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(filepath.Join(noDigest, "index.yaml"), []byte(strings.Join(kept, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	malformedEntries := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	packagetest.WriteIndex(t, malformedEntries,
		packagetest.IndexEntry{Name: "execsnoop", Digest: strings.Repeat("0", 64)},
		packagetest.IndexEntry{Name: "execsnoop", Version: "1.1.0", URL: packagetest.Omit, Digest: strings.Repeat("a", 64)})
	authed, ca := serveTLS(t, fileHandler(good, "alice", "s3cret"))
	ns := env.Namespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, Data: map[string][]byte{"username": []byte("alice"), "password": []byte("s3cret")}}
	noPass := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "nopass", Namespace: ns}, Data: map[string][]byte{"username": []byte("alice")}}
	for _, s := range []*corev1.Secret{secret, noPass} {
		if err := env.Client.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name   string
		spec   v1alpha1.PackageRepositorySpec
		status metav1.ConditionStatus
		want   string
	}{
		{"file", v1alpha1.PackageRepositorySpec{URL: "file://" + good}, metav1.ConditionTrue, "1 package(s)"},
		{"basic auth from secret", v1alpha1.PackageRepositorySpec{URL: authed.URL, CABundle: ca, SecretRef: &v1alpha1.SecretReference{Name: "creds", Namespace: ns}}, metav1.ConditionTrue, "1 package(s)"},
		{"no credentials", v1alpha1.PackageRepositorySpec{URL: authed.URL, CABundle: ca}, metav1.ConditionFalse, "401"},
		{"missing secret", v1alpha1.PackageRepositorySpec{URL: authed.URL, CABundle: ca, SecretRef: &v1alpha1.SecretReference{Name: "nope", Namespace: ns}}, metav1.ConditionFalse, "spec.secretRef: read Secret " + ns + "/nope"},
		{"secret without password", v1alpha1.PackageRepositorySpec{URL: authed.URL, CABundle: ca, SecretRef: &v1alpha1.SecretReference{Name: "nopass", Namespace: ns}}, metav1.ConditionFalse, `Secret ` + ns + `/nopass has no key "password"`},
		{"malformed index", v1alpha1.PackageRepositorySpec{URL: "file://" + malformed}, metav1.ConditionFalse, "parse index.yaml"},
		{"entry without digest", v1alpha1.PackageRepositorySpec{URL: "file://" + noDigest}, metav1.ConditionTrue, "1 version(s) cannot be installed because digests are mandatory: execsnoop 1.0.0 has no digest"},
		{"malformed entries", v1alpha1.PackageRepositorySpec{URL: "file://" + malformedEntries}, metav1.ConditionTrue, "1 package(s) at file://" + malformedEntries + "; 2 version(s) cannot be installed because their index entries are malformed: malformed index entry execsnoop 1.1.0: field urls is missing or empty: the entry names no archive to download; malformed digest in index entry execsnoop 1.0.0: field digest is not a string: YAML reads it as the integer 0; quote it (digest: \"sha256:<64 hex digits>\")"},
		{"bad CA bundle", v1alpha1.PackageRepositorySpec{URL: "https://127.0.0.1:1", CABundle: []byte("junk")}, metav1.ConditionFalse, "caBundle holds no PEM certificate"},
	}
	r := &Reconciler{Client: env.Client, Access: repoaccess.Policy{ClusterResourceNamespace: ns}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := reconcileOnce(t, r, newRepo(t, tt.spec))
			c := ready(got)
			if c == nil || c.Status != tt.status || !strings.Contains(c.Message, tt.want) {
				t.Fatalf("Ready = %+v, want %s with %q", c, tt.status, tt.want)
			}
		})
	}
}

func TestSyncOCIListsRequestedPackages(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Version: "1.0.0"}, packagetest.Source{Version: "1.1.0"})
	url, user, pass, ca := packagetest.OCIRegistryTLS(t, out)
	ns := env.Namespace(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "reg", Namespace: ns}, Data: map[string][]byte{"username": []byte(user), "password": []byte(pass)}}
	if err := env.Client.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	pr := newRepo(t, v1alpha1.PackageRepositorySpec{URL: url, CABundle: ca, SecretRef: &v1alpha1.SecretReference{Name: "reg", Namespace: ns}})
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: "exec", Namespace: ns}, Spec: v1alpha1.GadgetPackageSpec{Repository: pr.Name, Package: "execsnoop"}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env.Client, Access: repoaccess.Policy{ClusterResourceNamespace: ns}}
	got, _ := reconcileOnce(t, r, pr)
	if c := ready(got); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Ready = %+v", c)
	}
	if len(got.Status.Packages) != 1 || strings.Join(got.Status.Packages[0].Versions, ",") != "1.1.0,1.0.0" {
		t.Errorf("packages = %+v", got.Status.Packages)
	}
}

func TestControllerSyncsOnItsOwn(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{})
	startController(t, logr.Discard(), repoaccess.Policy{})
	pr := newRepo(t, v1alpha1.PackageRepositorySpec{URL: "file://" + out, Interval: metav1.Duration{Duration: time.Second}})
	eventually.NoError(t, 60*time.Second, "the repository to be Ready with one package", func() error {
		var got v1alpha1.PackageRepository
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: pr.Name}, &got); err != nil {
			return err
		}
		if c := ready(&got); c != nil && c.Status == metav1.ConditionTrue && got.Status.PackageCount == 1 {
			return nil
		}
		return fmt.Errorf("status %+v", got.Status)
	})
	// A new version appears; the next sync (interval 1s) lists it.
	packagetest.Write(t, filepath.Join(filepath.Dir(out), "src2"), packagetest.Source{Version: "1.5.0"})
	if _, err := chartrepo.Build(context.Background(), filepath.Join(filepath.Dir(out), "src2"), out, chartrepo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 60*time.Second, "the new version to be listed", func() error {
		var got v1alpha1.PackageRepository
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: pr.Name}, &got); err != nil {
			return err
		}
		if len(got.Status.Packages) == 1 && len(got.Status.Packages[0].Versions) == 2 && got.Status.Packages[0].Versions[0] == "1.5.0" {
			return nil
		}
		return fmt.Errorf("packages %+v", got.Status.Packages)
	})
}

// TestStatusIsBounded: a repository of 501 packages, one of them with 21
// versions, lists the first 500 packages by name and the 20 newest
// versions, counts all 501, and the API server stores it.
func TestStatusIsBounded(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nentries:\n")
	entry := func(name, version string) {
		fmt.Fprintf(&b, "  - apiVersion: v2\n    name: %s\n    version: %s\n    urls:\n    - %s-%s.tgz\n    digest: %s\n",
			name, version, name, version, chartrepo.SHA256([]byte(name+version)))
	}
	b.WriteString("  aaa-many:\n")
	for i := 0; i <= MaxVersions; i++ {
		entry("aaa-many", fmt.Sprintf("1.%d.0", i))
	}
	for i := 1; i <= MaxPackages; i++ { // with aaa-many, one more than the cap
		name := fmt.Sprintf("pkg-%03d", i)
		fmt.Fprintf(&b, "  %s:\n", name)
		entry(name, "1.0.0")
	}
	if err := os.WriteFile(filepath.Join(dir, "index.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env.Client}
	pr := newRepo(t, v1alpha1.PackageRepositorySpec{URL: "file://" + dir})

	got, _ := reconcileOnce(t, r, pr)
	if c := ready(got); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "501 package(s)") {
		t.Fatalf("Ready = %+v", c)
	}
	if got.Status.PackageCount != MaxPackages+1 {
		t.Errorf("packageCount = %d, want %d", got.Status.PackageCount, MaxPackages+1)
	}
	if n := len(got.Status.Packages); n != MaxPackages {
		t.Fatalf("%d packages listed, want %d", n, MaxPackages)
	}
	first, last := got.Status.Packages[0], got.Status.Packages[MaxPackages-1]
	if first.Name != "aaa-many" || len(first.Versions) != MaxVersions || first.Versions[0] != "1.20.0" || first.Versions[MaxVersions-1] != "1.1.0" {
		t.Errorf("first package = %s with %d versions %v, want aaa-many with the 20 newest (1.20.0 … 1.1.0)", first.Name, len(first.Versions), first.Versions)
	}
	if last.Name != "pkg-499" {
		t.Errorf("last listed package = %s, want pkg-499 (pkg-500 is beyond the cap)", last.Name)
	}
}
