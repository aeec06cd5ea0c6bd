package kubeevents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// grantConfigMaps creates sa in saNS (when missing) and a Role and
// RoleBinding in ns that let it get, list and watch ConfigMaps there.
func grantConfigMaps(t *testing.T, saNS, sa, ns string) {
	t.Helper()
	ctx := context.Background()
	acct := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: saNS, Name: sa}}
	if err := env.Client.Create(ctx, acct); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa + "-configmaps"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa + "-configmaps"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNS, Name: sa}}}
	create(t, role, rb)
}

// A monitor with a service account lists and watches as that account:
// it sees what its Role allows; where the account may not list, the
// monitor does not synchronize, Forbidden names the verb, resource,
// namespace and account and the log says so once per verb, while the operator's
// own monitor of the same namespace works; granting the right heals it.
func TestMonitorActsAsItsServiceAccount(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	grantConfigMaps(t, nsA, "sa-a", nsA)
	create(t, configMap(nsA, "a1", nil), configMap(nsB, "b1", nil))
	logs := &logSink{}
	m := startMonitors(t, funcr.New(logs.add, funcr.Options{}))
	sa := &ServiceAccount{Namespace: nsA, Name: "sa-a"}
	cms := func(id, ns string, sa *ServiceAccount) Config {
		return Config{ID: id, Binding: id, APIVersion: "v1", Kind: "ConfigMap", ServiceAccount: sa,
			Namespace: &NamespaceSelector{MatchNames: []string{ns}}, ExecuteHookOnSynchronization: true, KeepFullObjectsInMemory: true}
	}
	addAndStart(t, m, cms("in-a", nsA, sa))
	expect(t, m, "in-a Synchronization  "+nsA+"/a1")
	if err := m.Forbidden("in-a"); err != nil {
		t.Errorf("Forbidden of a monitor the account may run: %v", err)
	}

	addAndStart(t, m, cms("in-b", nsB, sa))
	// Both are refused; the list's refusal comes first once made (the
	// reflector's first request is a watch-list).
	err := eventually.Value(t, deadline, "the list of namespace B refused", func() (error, error) {
		var fe *ForbiddenError
		if err := m.Forbidden("in-b"); errors.As(err, &fe) && fe.Verb == "list" {
			return err, nil
		}
		return nil, errors.New("no list refused")
	})
	var fe *ForbiddenError
	if !errors.As(err, &fe) || fe.Verb != "list" || fe.Resource != "configmaps" || fe.Namespace != nsB || fe.ServiceAccount == nil || *fe.ServiceAccount != *sa {
		t.Errorf("Forbidden = %#v, want a list of configmaps in %s refused to %s", err, nsB, sa)
	}
	if want := fmt.Sprintf("list configmaps in namespace %s: forbidden for service account %s/sa-a", nsB, nsA); err.Error() != want {
		t.Errorf("Forbidden says %q, want %q", err, want)
	}
	if m.Synced("in-b") {
		t.Error("the refused monitor says it synchronized")
	}
	// The operator's own monitor of B is not the account's.
	addAndStart(t, m, cms("operator-b", nsB, nil))
	expect(t, m, "operator-b Synchronization  "+nsB+"/b1")

	// The account's other monitor goes on.
	create(t, configMap(nsA, "a2", nil))
	expect(t, m, "in-a Event Added "+nsA+"/a2")
	// One line per refused verb while the refusal lasts, however often
	// the monitor retries (the reflector's first request, a watch-list,
	// is a watch).
	for verb, most := range map[string]int{"list": 1, "watch": 1} {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"monitor"="in-b"`) && strings.Contains(l, "refused the binding's "+verb) {
				n++
			}
		}
		if n > most || (verb == "list" && n != 1) {
			t.Errorf("%d log lines about the refused %s, want 1 while it lasts:\n%s", n, verb, logs)
		}
	}

	grantConfigMaps(t, nsA, "sa-a", nsB)
	expect(t, m, "in-b Synchronization  "+nsB+"/b1")
	if err := m.Forbidden("in-b"); err != nil {
		t.Errorf("Forbidden after the grant: %v", err)
	}
}

// An account that may list but not watch: the monitor lists, and
// Forbidden names the watch.
func TestMonitorWhoseAccountMayNotWatch(t *testing.T) {
	nsA, nsC := env.Namespace(t), env.Namespace(t)
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "sa-a"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: nsC, Name: "list-only"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: nsC, Name: "list-only"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "list-only"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: nsA, Name: "sa-a"}}},
		configMap(nsC, "c1", nil))
	m := startMonitors(t, funcr.New(func(string, string) {}, funcr.Options{}))
	addAndStart(t, m, Config{ID: "in-c", Binding: "in-c", APIVersion: "v1", Kind: "ConfigMap", ServiceAccount: &ServiceAccount{Namespace: nsA, Name: "sa-a"},
		Namespace: &NamespaceSelector{MatchNames: []string{nsC}}})
	err := eventually.Value(t, deadline, "the watch refused", func() (error, error) {
		if err := m.Forbidden("in-c"); err != nil {
			return err, nil
		}
		return nil, errors.New("not refused")
	})
	if want := fmt.Sprintf("watch configmaps in namespace %s: forbidden for service account %s/sa-a", nsC, nsA); err.Error() != want {
		t.Errorf("Forbidden says %q, want %q", err, want)
	}
}

// A monitor's service account needs a namespace and a name.
func TestServiceAccountNeedsNamespaceAndName(t *testing.T) {
	m := startMonitors(t, funcr.New(func(string, string) {}, funcr.Options{}))
	err := m.AddMonitor(context.Background(), Config{ID: "x", Binding: "x", APIVersion: "v1", Kind: "ConfigMap", ServiceAccount: &ServiceAccount{Name: "sa"}})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "serviceAccount") {
		t.Errorf("AddMonitor with a service account without namespace: %v, want ErrInvalidConfig naming serviceAccount", err)
	}
}
