package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
)

// tenant creates service account sa in ns, allowed to manage ConfigMaps
// in ns only (a Role and a RoleBinding; the test packages' charts hold
// one) and to keep Helm releases (Secrets) there, as a package's own
// identity must, and a ConfigMap named cm there.
func tenant(t *testing.T, ns, sa, cm string) {
	t.Helper()
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cm}},
	} {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
}

// hookClient is a client with the credentials of the kubeconfig a hook
// copied to path, and the user the API server says they are.
func hookClient(path string) (*kubernetes.Clientset, string, error) {
	kc, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("the hook's kubeconfig: %w", err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, "", fmt.Errorf("the hook's kubeconfig: %w\n%s", err, kc)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	// What `kubectl auth whoami` asks.
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("SelfSubjectReview with the hook's kubeconfig: %w", err)
	}
	return cs, r.Status.UserInfo.Username, nil
}

// Two tenants, A and B, each with a service account that may read
// ConfigMaps in its own namespace only. A package in A acting as sa-a
// (spec.serviceAccountName) watches ConfigMaps in A and its hooks run
// with sa-a's token: they may read A's ConfigMaps, not B's. A package in B
// without the field acts as the default service account, sa-b. A package
// in A watching B's ConfigMaps as sa-a goes Stalled, its status, a
// Warning Event and the log naming the binding, verb, resource,
// namespace and account; a package naming an account that does not
// exist goes Stalled naming the package, the account and what to do; the
// other packages run meanwhile.
func TestPackagesActAsTheirServiceAccount(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	tenant(t, nsA, "sa-a", "mine")
	tenant(t, nsB, "sa-b", "theirs")
	dir := t.TempDir()
	journal, out := filepath.Join(dir, "journal"), filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	watch := func(ns string) string {
		return fmt.Sprintf(`{"configVersion":"v1","onStartup":10,"kubernetes":[{"name":"cms","apiVersion":"v1","kind":"ConfigMap","namespace":{"nameSelector":{"matchNames":[%q]}}}]}`, ns)
	}
	// Renamed into place: the test may read it while a later run writes.
	keepKubeconfig := func(pkg string) string {
		return fmt.Sprintf(`cp -f "$KUBECONFIG" %[1]q.tmp && mv -f %[1]q.tmp %[1]q`, filepath.Join(out, pkg))
	}
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "watcher", Hooks: map[string]string{"10-watch.sh": recorder("watcher", journal, watch(nsA), keepKubeconfig("watcher"))}},
		packagetest.Source{Name: "trespasser", Hooks: map[string]string{"10-watch.sh": recorder("trespasser", journal, watch(nsB), "")}},
		packagetest.Source{Name: "defaulted", Hooks: map[string]string{"10-start.sh": recorder("defaulted", journal, `{"configVersion":"v1","onStartup":10}`, keepKubeconfig("defaulted"))}},
		packagetest.Source{Name: "ghost", Hooks: map[string]string{"10-start.sh": recorder("ghost", journal, `{"configVersion":"v1","onStartup":10}`, "")}},
	)
	createRepo(t, "identity-"+nsA, repoDir)
	// No --hook-service-account: packages with an identity get its
	// tokens all the same.
	_, logs, _ := startWith(t, func(o *coordinator.Options) { o.DefaultServiceAccount = "sa-b" })
	repo := "identity-" + nsA
	for _, p := range []struct{ ns, name, sa string }{{nsA, "watcher", "sa-a"}, {nsA, "trespasser", "sa-a"}, {nsA, "ghost", "nobody"}, {nsB, "defaulted", ""}} {
		gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.ns},
			Spec: v1alpha1.GadgetPackageSpec{Repository: repo, Package: p.name, Version: "*", ServiceAccountName: p.sa}}
		if err := env.Client.Create(context.Background(), gp); err != nil {
			t.Fatal(err)
		}
	}

	// The refused binding.
	gp := waitFor(t, nsA, "trespasser", "Stalled", stalled)
	// Both list and watch are refused: the message names the one the
	// start saw first.
	refusal := fmt.Sprintf(" configmaps in namespace %s: forbidden for service account %s/sa-a", nsB, nsA)
	want := []string{"hook 10-watch.sh binding cms: ", refusal, "grant it to the service account"}
	msg := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled).Message
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("trespasser's Stalled message %q does not say %q", msg, w)
		}
	}
	if !strings.Contains(msg, "cms: list"+refusal) && !strings.Contains(msg, "cms: watch"+refusal) {
		t.Errorf("trespasser's Stalled message %q names neither list nor watch", msg)
	}
	waitForWarning(t, nsA, "trespasser", hookhost.ReasonBindingForbidden, want...)
	if lines := errorLines(logs, `"package"="`+nsA+`.trespasser"`, refusal); len(lines) != 1 {
		t.Errorf("%d error lines naming trespasser and the refusal, want 1 (when its start is given up on):\n%s", len(lines), strings.Join(lines, "\n"))
	}

	// The missing account.
	gp = waitFor(t, nsA, "ghost", "Stalled", stalled)
	msg = meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled).Message
	for _, w := range []string{"issue a token for serviceaccount " + nsA + "/nobody of GadgetPackage " + nsA + "/ghost", `serviceaccounts "nobody" not found`,
		"does not exist: create it in namespace " + nsA + ", or set spec.serviceAccountName of GadgetPackage " + nsA + "/ghost"} {
		if !strings.Contains(msg, w) {
			t.Errorf("ghost's Stalled message %q does not say %q", msg, w)
		}
	}
	waitForWarning(t, nsA, "ghost", "", "serviceaccount "+nsA+"/nobody")

	// The packages that may do what they do ran meanwhile.
	waitFor(t, nsA, "watcher", "Running", running)
	waitFor(t, nsB, "defaulted", "Running", running)
	runs := readJournal(t, journal)
	if i := index(runs, "watcher", "cms"); i < 0 || runs[i].typ != "Synchronization" || len(runs[i].contexts[0]["objects"].([]any)) != 1 {
		t.Errorf("watcher's runs %+v, want a Synchronization of cms with A's one ConfigMap", runs)
	}
	for _, r := range runs {
		if r.pkg == "ghost" {
			t.Errorf("ghost's hook ran without credentials: %+v", r)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "new"}}
	if err := env.Client.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	waitForRuns(t, journal, "watcher's Event Added for ConfigMap new", func(r []run) bool { return added(r, "cms", "new") >= 0 })

	// The hooks' own credentials.
	for _, tc := range []struct {
		pkg, user   string
		may, mayNot [2]string // namespace, ConfigMap
	}{
		{"watcher", "system:serviceaccount:" + nsA + ":sa-a", [2]string{nsA, "mine"}, [2]string{nsB, "theirs"}},
		{"defaulted", "system:serviceaccount:" + nsB + ":sa-b", [2]string{nsB, "theirs"}, [2]string{nsA, "mine"}},
	} {
		cs, user, err := hookClient(filepath.Join(out, tc.pkg))
		if err != nil {
			t.Fatalf("%s: %v", tc.pkg, err)
		}
		if user != tc.user {
			t.Errorf("%s's hook is %q, want %q", tc.pkg, user, tc.user)
		}
		if _, err := cs.CoreV1().ConfigMaps(tc.may[0]).Get(context.Background(), tc.may[1], metav1.GetOptions{}); err != nil {
			t.Errorf("%s's hook reading ConfigMap %s/%s: %v", tc.pkg, tc.may[0], tc.may[1], err)
		}
		if _, err := cs.CoreV1().ConfigMaps(tc.mayNot[0]).Get(context.Background(), tc.mayNot[1], metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("%s's hook reading ConfigMap %s/%s: %v, want Forbidden", tc.pkg, tc.mayNot[0], tc.mayNot[1], err)
		}
	}

	// Another account in the spec: the package starts over as it.
	tenant(t, nsA, "sa-a2", "mine2")
	var w v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: nsA, Name: "watcher"}, &w); err != nil {
		t.Fatal(err)
	}
	w.Spec.ServiceAccountName = "sa-a2"
	if err := env.Client.Update(context.Background(), &w); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 90*time.Second, "watcher's hook to run as sa-a2", func() error {
		_, user, err := hookClient(filepath.Join(out, "watcher"))
		if err == nil && user != "system:serviceaccount:"+nsA+":sa-a2" {
			err = fmt.Errorf("the hook is %s", user)
		}
		return err
	})
}
