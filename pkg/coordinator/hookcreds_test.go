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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
)

// With hook credentials and their service account missing, a package
// whose hook runs goes Stalled with the TokenRequest's error (naming the
// account and what to do) in its status, a Warning Event and one error
// line of the log, while a package without hooks runs. Once the account
// exists and the package is retried, its hook gets a kubeconfig that
// authenticates as the account, and nothing of the operator's own
// credentials.
func TestHookCredentialsOfTheirOwn(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "withhook", Hooks: map[string]string{"10-start.sh": fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then echo '{"configVersion":"v1","onStartup":1}'; exit 0; fi
cp "$KUBECONFIG" %[1]q/kubeconfig
env > %[1]q/env
`, out)}},
		packagetest.Source{Name: "nohook", Hooks: map[string]string{}},
	)
	createRepo(t, "creds-"+ns, repoDir)
	// What the operator's own environment holds, in a cluster or out.
	t.Setenv("KUBECONFIG", "/operator/kubeconfig")
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	issuer, err := hookcreds.New(hookcreds.Options{Config: env.Config, Namespace: ns, ServiceAccount: hookcreds.DefaultServiceAccount})
	if err != nil {
		t.Fatal(err)
	}
	_, logs, _ := startWith(t, func(o *coordinator.Options) { o.HookCredentials = issuer })
	createPackage(t, ns, "withhook", "creds-"+ns)
	createPackage(t, ns, "nohook", "creds-"+ns)

	waitFor(t, ns, "nohook", "Running", running)
	gp := waitFor(t, ns, "withhook", "Stalled", stalled)
	want := []string{"10-start.sh", "issue a token for serviceaccount " + ns + "/gadgetpm-hooks", `serviceaccounts "gadgetpm-hooks" not found`, "create it or set --hook-service-account"}
	msg := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled).Message
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("Stalled message %q does not say %q", msg, w)
		}
	}
	eventually.NoError(t, 30*time.Second, "a Warning Event on withhook naming the service account", func() error {
		var events corev1.EventList
		if err := env.Client.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Name == "withhook" && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, want[1]) {
				return nil
			}
		}
		return fmt.Errorf("%d events, none of them", len(events.Items))
	})
	if lines := errorLines(logs, `"package"="`+ns+`.withhook"`, want[1], want[3]); len(lines) != 1 {
		t.Errorf("%d error lines in the operator log naming the service account, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if _, err := os.Stat(filepath.Join(out, "env")); !os.IsNotExist(err) {
		t.Errorf("the hook ran without credentials: %v", err)
	}

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: hookcreds.DefaultServiceAccount}}
	if err := env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(gp), gp); err != nil {
		t.Fatal(err)
	}
	metav1.SetMetaDataAnnotation(&gp.ObjectMeta, v1alpha1.RetryAnnotation, "account created")
	if err := env.Client.Update(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ns, "withhook", "Running", running)

	kc, err := os.ReadFile(filepath.Join(out, "kubeconfig"))
	if err != nil {
		t.Fatalf("the hook's kubeconfig: %v", err)
	}
	loaded, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatalf("the hook's kubeconfig: %v\n%s", err, kc)
	}
	user := loaded.AuthInfos[loaded.Contexts[loaded.CurrentContext].AuthInfo]
	// The API server says whose token it is.
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: user.Token}}
	if err := env.Client.Create(context.Background(), review); err != nil {
		t.Fatal(err)
	}
	if got, want := review.Status.User.Username, "system:serviceaccount:"+ns+":gadgetpm-hooks"; !review.Status.Authenticated || got != want {
		t.Errorf("the hook's token authenticates as %q (authenticated %v, %s), want %q", got, review.Status.Authenticated, review.Status.Error, want)
	}
	hookEnv, _ := os.ReadFile(filepath.Join(out, "env"))
	for _, leak := range []string{"KUBECONFIG=/operator/kubeconfig", "KUBERNETES_SERVICE_HOST=", "KUBERNETES_SERVICE_PORT="} {
		if strings.Contains(string(hookEnv), leak) {
			t.Errorf("the operator's %s reached the hook:\n%s", leak, hookEnv)
		}
	}
}

// hookAccount creates the service account `gadgetpm operator` gives hooks
// by default, in its namespace out of a cluster ("default").
func hookAccount(t testing.TB) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: hookcreds.DefaultServiceAccount}}
	if err := env.Client.Create(context.Background(), sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
