package chartcheck_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestUserRoles installs the chart with its user ClusterRoles, binds a
// service account to each in a tenant's namespace, and asks the API
// server's authorizer what each may do there and elsewhere. The test
// control plane runs no aggregation controller, so aggregation into
// view, edit and admin is checked by the roles' labels.
func TestUserRoles(t *testing.T) {
	ns, tenant, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	install(t, ns, "users", map[string]any{"rbac": map[string]any{"userRoles": map[string]any{"create": true}}})
	ctx := context.Background()

	for role, aggregate := range map[string]string{
		"gadgetpm-trace-viewer": "view", "gadgetpm-trace-editor": "edit", "gadgetpm-package-admin": "admin",
	} {
		var cr rbacv1.ClusterRole
		if !exists(t, &cr, "", role) {
			t.Fatalf("ClusterRole %s not installed", role)
		}
		if cr.Labels["rbac.authorization.k8s.io/aggregate-to-"+aggregate] != "true" {
			t.Errorf("ClusterRole %s labels %v: want it aggregated to %s", role, cr.Labels, aggregate)
		}
		// the service account of the same name, bound in the tenant's
		// namespace
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: role}}
		if err := env.Client.Create(ctx, sa); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: role},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: tenant, Name: role}}}
		if err := env.Client.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}

	const (
		traces   = "gadget.kinvolk.io"
		packages = "gadgetpm.io"
	)
	type check struct {
		group, resource, verb string
		want                  bool
	}
	for role, checks := range map[string][]check{
		"gadgetpm-trace-viewer": {
			{traces, "traces", "get", true}, {traces, "traces", "list", true}, {traces, "traces", "watch", true},
			{traces, "traces/status", "get", true},
			{traces, "traces", "create", false}, {traces, "traces", "patch", false}, {traces, "traces", "delete", false},
			{packages, "gadgetpackages", "get", false}, {"", "secrets", "get", false},
		},
		"gadgetpm-trace-editor": {
			{traces, "traces", "get", true}, {traces, "traces", "watch", true},
			{traces, "traces", "create", true}, {traces, "traces", "update", true}, {traces, "traces", "patch", true}, {traces, "traces", "delete", true},
			{traces, "traces/status", "update", false},
			{packages, "gadgetpackages", "get", false}, {packages, "gadgetpackages", "create", false},
		},
		"gadgetpm-package-admin": {
			{packages, "gadgetpackages", "get", true}, {packages, "gadgetpackages", "create", true},
			{packages, "gadgetpackages", "patch", true}, {packages, "gadgetpackages", "delete", true},
			{packages, "gadgetpackages/status", "get", true}, {packages, "gadgetpackages/status", "update", false},
			{traces, "traces", "get", true}, {traces, "traces", "create", true}, {traces, "traces", "delete", true},
			{"", "secrets", "get", false}, {"", "configmaps", "create", false},
		},
	} {
		for _, c := range checks {
			if got := can(t, tenant, role, tenant, c.group, c.resource, c.verb); got != c.want {
				t.Errorf("%s bound in %s: %s %s.%s allowed=%v, want %v", role, tenant, c.verb, c.resource, c.group, got, c.want)
			}
			// the binding is the tenant's namespace only
			if c.want && can(t, tenant, role, other, c.group, c.resource, c.verb) {
				t.Errorf("%s bound in %s may %s %s.%s in namespace %s", role, tenant, c.verb, c.resource, c.group, other)
			}
		}
	}

	// Repositories are cluster-scoped: a ClusterRoleBinding of the
	// repository viewer's role lets a tenant read them, never write them,
	// and grants nothing else in any namespace.
	const repoViewer = "gadgetpm-repository-viewer"
	var rv rbacv1.ClusterRole
	if !exists(t, &rv, "", repoViewer) {
		t.Fatalf("ClusterRole %s not installed", repoViewer)
	}
	for k := range rv.Labels {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
			t.Errorf("ClusterRole %s is aggregated (%s): it is meant for a ClusterRoleBinding of its own", repoViewer, k)
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: repoViewer}}
	if err := env.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "repository-viewer-" + tenant},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: repoViewer},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: tenant, Name: repoViewer}}}
	if err := env.Client.Create(ctx, crb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), crb) })
	for _, c := range []check{
		{packages, "packagerepositories", "get", true}, {packages, "packagerepositories", "list", true}, {packages, "packagerepositories", "watch", true},
		{packages, "packagerepositories", "create", false}, {packages, "packagerepositories", "update", false}, {packages, "packagerepositories", "delete", false},
	} {
		if got := can(t, tenant, repoViewer, "", c.group, c.resource, c.verb); got != c.want {
			t.Errorf("%s bound cluster-wide: %s %s allowed=%v, want %v", repoViewer, c.verb, c.resource, got, c.want)
		}
	}
	for _, c := range []check{{packages, "gadgetpackages", "get", false}, {traces, "traces", "get", false}, {"", "secrets", "get", false}} {
		if got := can(t, tenant, repoViewer, other, c.group, c.resource, c.verb); got != c.want {
			t.Errorf("%s bound cluster-wide: %s %s in %s allowed=%v, want %v", repoViewer, c.verb, c.resource, other, got, c.want)
		}
	}
	for _, role := range []string{"gadgetpm-trace-viewer", "gadgetpm-trace-editor"} {
		if can(t, tenant, role, "", packages, "packagerepositories", "get") {
			t.Errorf("%s may read packagerepositories", role)
		}
	}
}

// TestUserRolesOff: rbac.userRoles.create=false installs none of them.
func TestUserRolesOff(t *testing.T) {
	o := mustRender(t, "gadgetpm", map[string]any{"rbac": map[string]any{"userRoles": map[string]any{"create": false}}})
	for _, cr := range o.cr {
		switch cr.Name {
		case "gadgetpm-trace-viewer", "gadgetpm-trace-editor", "gadgetpm-package-admin", "gadgetpm-repository-viewer":
			t.Errorf("rbac.userRoles.create=false renders ClusterRole %s", cr.Name)
		}
	}
	if o = mustRender(t, "gadgetpm", nil); len(o.cr) == 0 {
		t.Fatal("no ClusterRole rendered")
	}
	n := 0
	for _, cr := range o.cr {
		switch cr.Name {
		case "gadgetpm-trace-viewer", "gadgetpm-trace-editor", "gadgetpm-package-admin", "gadgetpm-repository-viewer":
			n++
		}
	}
	if n != 4 {
		t.Errorf("the defaults render %d of the 4 user ClusterRoles", n)
	}
}
