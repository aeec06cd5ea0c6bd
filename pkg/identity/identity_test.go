package identity_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/identity"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func TestServiceAccount(t *testing.T) {
	pkg := func(sa string) *v1alpha1.GadgetPackage {
		gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-a", Name: "p"}}
		gp.Spec.ServiceAccountName = sa
		return gp
	}
	for _, tc := range []struct {
		name, field, defaultSA string
		wantName               string
		wantOK                 bool
	}{
		{name: "field", field: "deployer", wantName: "deployer", wantOK: true},
		{name: "field wins over the default", field: "deployer", defaultSA: "fallback", wantName: "deployer", wantOK: true},
		{name: "default", defaultSA: "fallback", wantName: "fallback", wantOK: true},
		{name: "neither: the operator's identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, name, ok := identity.ServiceAccount(pkg(tc.field), tc.defaultSA)
			if ok != tc.wantOK || name != tc.wantName {
				t.Fatalf("ServiceAccount = %q, %q, %v; want %q, %v", ns, name, ok, tc.wantName, tc.wantOK)
			}
			if ok && ns != "tenant-a" {
				t.Errorf("namespace %q; want the package's, tenant-a", ns)
			}
		})
	}
}

func TestImpersonateCopies(t *testing.T) {
	base := &rest.Config{Host: "https://example", QPS: 7, Burst: 9, BearerToken: "operator"}
	c := identity.Impersonate(base, "tenant-a", "deployer")
	if c.Impersonate.UserName != "system:serviceaccount:tenant-a:deployer" {
		t.Errorf("Impersonate.UserName = %q", c.Impersonate.UserName)
	}
	if c.Host != base.Host || c.QPS != 7 || c.Burst != 9 || c.BearerToken != "operator" {
		t.Errorf("copy lost base's settings: %+v", c)
	}
	if base.Impersonate.UserName != "" {
		t.Errorf("base changed: %+v", base.Impersonate)
	}
}

// refusal is the API server's error for a request its authorizer refused.
func refusal(user, verb, group, resource, ns string) error {
	scope := fmt.Sprintf("in the namespace %q", ns)
	if ns == "" {
		scope = "at the cluster scope"
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: group, Resource: resource}, "x",
		fmt.Errorf("User %q cannot %s resource %q in API group %q %s", user, verb, resource, group, scope))
}

func TestAsForbidden(t *testing.T) {
	sa := "system:serviceaccount:tenant-a:deployer"
	for _, tc := range []struct {
		name string
		err  error
		want string // "" means no refusal found
	}{
		{name: "namespaced", err: refusal(sa, "create", "", "configmaps", "tenant-b"),
			want: "create configmaps in namespace tenant-b: forbidden for service account tenant-a/deployer"},
		{name: "grouped resource", err: refusal(sa, "patch", "apps", "deployments", "tenant-a"),
			want: "patch deployments.apps in namespace tenant-a: forbidden for service account tenant-a/deployer"},
		{name: "subresource", err: refusal(sa, "update", "apps", "deployments/scale", "tenant-a"),
			want: "update deployments.apps/scale in namespace tenant-a: forbidden for service account tenant-a/deployer"},
		{name: "cluster scope", err: refusal(sa, "create", "rbac.authorization.k8s.io", "clusterroles", ""),
			want: "create clusterroles.rbac.authorization.k8s.io at the cluster scope: forbidden for service account tenant-a/deployer"},
		{name: "a user", err: refusal("alice", "get", "", "secrets", "tenant-a"),
			want: "get secrets in namespace tenant-a: forbidden for user alice"},
		{name: "wrapped", err: fmt.Errorf("install release: %w", refusal(sa, "create", "", "configmaps", "tenant-b")),
			want: "create configmaps in namespace tenant-b: forbidden for service account tenant-a/deployer"},
		{name: "flattened into text, as Helm joins errors",
			err:  errors.New("1 error occurred: * " + refusal(sa, "create", "", "configmaps", "tenant-b").Error()),
			want: "create configmaps in namespace tenant-b: forbidden for service account tenant-a/deployer"},
		{name: "joined, the first refusal", err: errors.Join(errors.New("other"), refusal(sa, "delete", "", "pods", "b"), refusal(sa, "get", "", "pods", "c")),
			want: "delete pods in namespace b: forbidden for service account tenant-a/deployer"},
		{name: "Forbidden but not for lack of rights",
			err: apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "x", errors.New("unable to create new content in namespace b because it is being terminated"))},
		{name: "other error", err: apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, "x")},
		{name: "nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe, ok := identity.AsForbidden(tc.err)
			if tc.want == "" {
				if ok || identity.IsForbidden(tc.err) {
					t.Fatalf("AsForbidden(%v) = %v; want no refusal", tc.err, fe)
				}
				if tc.err != nil && identity.DescribeForbidden(tc.err) != tc.err.Error() {
					t.Errorf("DescribeForbidden changed a plain error: %q", identity.DescribeForbidden(tc.err))
				}
				return
			}
			if !ok {
				t.Fatalf("AsForbidden(%v): no refusal found", tc.err)
			}
			if fe.Error() != tc.want || identity.DescribeForbidden(tc.err) != tc.want {
				t.Errorf("got %q; want %q", fe.Error(), tc.want)
			}
			if !errors.Is(fe, tc.err) {
				t.Errorf("the ForbiddenError does not wrap the API error")
			}
			// Wrapping it again finds the same one, not a re-parse.
			if again, _ := identity.AsForbidden(fmt.Errorf("outer: %w", fe)); again != fe {
				t.Errorf("AsForbidden of a wrapped ForbiddenError = %v; want the same", again)
			}
		})
	}
}

// TestImpersonatedRefusalFromTheAPIServer: a ServiceAccount without rights,
// impersonated, is refused by the real API server, and the refusal is read
// back as verb, resource, namespace and account.
func TestImpersonatedRefusalFromTheAPIServer(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(identity.Impersonate(env.Config, ns, "nobody"))
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}
	_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	fe, ok := identity.AsForbidden(err)
	if !ok {
		t.Fatalf("create as an account without rights: %v; want a refusal", err)
	}
	want := fmt.Sprintf("create configmaps in namespace %s: forbidden for service account %s/nobody", ns, ns)
	if fe.Error() != want {
		t.Errorf("got %q; want %q", fe.Error(), want)
	}
	_, err = cs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
	if got, want := identity.DescribeForbidden(err), fmt.Sprintf("list clusterroles.rbac.authorization.k8s.io at the cluster scope: forbidden for service account %s/nobody", ns); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
