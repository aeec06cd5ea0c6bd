package chartcheck_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// install installs the chart as release name into ns through pkg/nelm, the
// way the chart is installed by Helm. No kubelet runs in the test control
// plane, so the DaemonSet never becomes ready: the install must apply every
// object and then fail naming the DaemonSet as what it waited for.
func install(t *testing.T, ns, name string, values map[string]any) (*nelm.Service, nelm.Package) {
	t.Helper()
	s, err := nelm.New(env.Config, nelm.Options{Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.StopMonitors)
	pkg := nelm.Package{Namespace: ns, Name: name}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = s.Upgrade(ctx, pkg, loadChart(t), values)
	if !errors.Is(err, nelm.ErrNotReady) {
		t.Fatalf("install: %v; want it to wait for the DaemonSet and fail with ErrNotReady", err)
	}
	if want := "DaemonSet " + ns + "/" + name + "-gadgetpm is not ready"; !strings.Contains(err.Error(), want) {
		t.Fatalf("install error %q does not say %q", err, want)
	}
	return s, pkg
}

// can asks the API server's authorizer whether the ServiceAccount may do
// verb on resource (optionally "resource/subresource") in ns.
func can(t *testing.T, saNS, sa, ns, group, resource, verb string) bool {
	t.Helper()
	res, sub, _ := strings.Cut(resource, "/")
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + saNS + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: group, Resource: res, Subresource: sub,
		},
	}}
	if err := env.Client.Create(context.Background(), sar); err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	return sar.Status.Allowed
}

func exists(t *testing.T, obj client.Object, ns, name string) bool {
	t.Helper()
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("get %T %s/%s: %v", obj, ns, name, err)
	}
	return err == nil
}

// TestInstallNarrowRBAC installs the chart with rbac.packageResources off
// and lets the API server's authorizer judge its RBAC: the operator may do
// what it needs, leases only in its namespace, and nothing else.
func TestInstallNarrowRBAC(t *testing.T) {
	ns := env.Namespace(t)
	other := env.Namespace(t)
	s, pkg := install(t, ns, "narrow", map[string]any{"rbac": map[string]any{"packageResources": false}})
	name := "narrow-gadgetpm"

	for _, o := range []struct {
		obj      client.Object
		ns, name string
	}{
		{&corev1.ServiceAccount{}, ns, name},
		{&rbacv1.ClusterRole{}, "", name},
		{&rbacv1.ClusterRoleBinding{}, "", name},
		{&rbacv1.Role{}, ns, name + "-leader-election"},
		{&rbacv1.RoleBinding{}, ns, name + "-leader-election"},
		{&appsv1.DaemonSet{}, ns, name},
		{&corev1.Service{}, ns, name + "-metrics"},
	} {
		if !exists(t, o.obj, o.ns, o.name) {
			t.Errorf("%T %s/%s was not installed", o.obj, o.ns, o.name)
		}
	}
	var svc corev1.Service
	if exists(t, &svc, ns, name+"-metrics") && svc.Spec.ClusterIP == "" {
		t.Error("the metrics Service got no cluster IP")
	}

	for _, n := range clusterNeeds {
		if !can(t, ns, name, other, n.group, n.resource, n.verb) {
			t.Errorf("the API server denies %s on %s.%s in namespace %s", n.verb, n.resource, n.group, other)
		}
	}
	for _, n := range leaseNeeds {
		if !can(t, ns, name, ns, n.group, n.resource, n.verb) {
			t.Errorf("the API server denies %s on %s in the release namespace", n.verb, n.resource)
		}
		if can(t, ns, name, other, n.group, n.resource, n.verb) {
			t.Errorf("the operator may %s leases in %s too; want only its own namespace", n.verb, other)
		}
	}
	for _, n := range []need{{"apps", "deployments", "create"}, {"", "pods", "delete"}, {"rbac.authorization.k8s.io", "clusterroles", "create"}, {"", "nodes", "update"}} {
		if can(t, ns, name, other, n.group, n.resource, n.verb) {
			t.Errorf("with rbac.packageResources off the operator may still %s %s.%s", n.verb, n.resource, n.group)
		}
	}

	// Uninstalling removes the cluster-scoped objects too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Delete(ctx, pkg); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if exists(t, &rbacv1.ClusterRole{}, "", name) || exists(t, &rbacv1.ClusterRoleBinding{}, "", name) || exists(t, &appsv1.DaemonSet{}, ns, name) {
		t.Error("objects of the release are left after uninstall")
	}
	if can(t, ns, name, other, "gadgetpm.io", "gadgetpackages", "list") {
		t.Error("the ServiceAccount keeps its rights after uninstall")
	}
}

// TestInstallDefaults installs with the defaults: the broad rule lets the
// operator manage whatever packages bring.
func TestInstallDefaults(t *testing.T) {
	ns := env.Namespace(t)
	other := env.Namespace(t)
	install(t, ns, "defaults", nil)
	name := "defaults-gadgetpm"
	for _, n := range append(append([]need{}, clusterNeeds...), need{"apps", "deployments", "create"}, need{"example.com", "widgets", "watch"}) {
		if !can(t, ns, name, other, n.group, n.resource, n.verb) {
			t.Errorf("the API server denies %s on %s.%s", n.verb, n.resource, n.group)
		}
	}
	var ds appsv1.DaemonSet
	if !exists(t, &ds, ns, name) {
		t.Fatal("DaemonSet not installed")
	}
	if c := ds.Spec.Template.Spec.Containers[0]; c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged || !ds.Spec.Template.Spec.HostPID {
		t.Error("the API server holds a DaemonSet that is not privileged with the host's PID namespace")
	}
}
