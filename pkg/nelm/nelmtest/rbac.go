package nelmtest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReleaseStorage lets an account keep Helm releases (Secrets) in a
// namespace, as every package's identity must in the package's own.
var ReleaseStorage = rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"},
	Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}

// ConfigMaps lets an account manage ConfigMaps.
var ConfigMaps = rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"},
	Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}

// ServiceAccount creates the ServiceAccount ns/name, with a Role in ns
// holding rules bound to it when there are any, as a tenant's admin would.
// The API server enforces these for a client impersonating it.
func ServiceAccount(t testing.TB, c client.Client, ns, name string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.Create(context.Background(), sa); err != nil {
		t.Fatalf("create ServiceAccount %s/%s: %v", ns, name, err)
	}
	if len(rules) > 0 {
		Grant(t, c, ns, ns, name, rules...)
	}
}

// Grant binds a Role in ns holding rules to the ServiceAccount saNS/sa.
func Grant(t testing.TB, c client.Client, ns, saNS, sa string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	name := "grant-" + saNS + "-" + sa
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules}
	if err := c.Create(ctx, role); err != nil {
		t.Fatalf("create Role %s/%s: %v", ns, name, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNS, Name: sa}},
	}
	if err := c.Create(ctx, rb); err != nil {
		t.Fatalf("create RoleBinding %s/%s: %v", ns, name, err)
	}
}

// ConfigMapExists reports whether ConfigMap ns/name exists: what a
// package's account could or could not create.
func ConfigMapExists(t testing.TB, c client.Client, ns, name string) bool {
	t.Helper()
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.ConfigMap{})
	if client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	return err == nil
}
