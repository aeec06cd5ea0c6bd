package hookhost_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/hookcreds"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
)

// A binding that its package's account may not watch fails the start,
// naming the binding and the refusal, even when the binding does not
// wait for its Synchronization (a custom queue with
// waitForSynchronization false): otherwise nothing would say why its
// hook never runs.
func TestEnableFailsOnARefusedBindingNotWaitedFor(t *testing.T) {
	ns, other := env.Namespace(t), env.Namespace(t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sa-a"}}
	if err := env.Client.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	hook := fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then
  echo '{"configVersion":"v1","kubernetes":[{"name":"elsewhere","apiVersion":"v1","kind":"ConfigMap","namespace":{"nameSelector":{"matchNames":[%q]}},"queue":"side","waitForSynchronization":false}]}'
  exit 0
fi
`, other)
	root := packagetest.Write(t, t.TempDir(), packagetest.Source{Name: "side", Hooks: map[string]string{"10-side.sh": hook}})
	p, err := loader.Load(context.Background(), root, loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := hookcreds.NewAccounts(hookcreds.Options{Config: env.Config})
	if err != nil {
		t.Fatal(err)
	}
	s := newServices(t)
	s.opts.AccountCredentials = func(namespace, name, owner string) (hooks.Credentials, error) {
		return accounts.Issuer(namespace, name, owner)
	}
	h, err := hookhost.New(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	s.run(t, h)
	key := ns + ".side"
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "side"}, Spec: v1alpha1.GadgetPackageSpec{ServiceAccountName: "sa-a"}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Prepare(ctx, key, p, gp); err != nil {
		t.Fatal(err)
	}
	defer h.Forget(key)
	err = h.Enable(ctx, key)
	want := fmt.Sprintf(" configmaps in namespace %s: forbidden for service account %s/sa-a", other, ns)
	if err == nil || !strings.Contains(err.Error(), "hook 10-side.sh binding elsewhere: ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("Enable: %v, want an error naming the binding and %q", err, want)
	}
}
