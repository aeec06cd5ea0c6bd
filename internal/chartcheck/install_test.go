package chartcheck_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// install installs the chart as release name into ns through pkg/nelm, the
// way the chart is installed by Helm. No kubelet runs in the test control
// plane, so neither workload becomes ready: the install must apply every
// object and then fail naming what it waited for.
//
// The user ClusterRoles have fixed names, so one release in the control
// plane holds them: unless values set rbac.userRoles, install leaves
// them out.
func install(t *testing.T, ns, name string, values map[string]any) (*nelm.Service, nelm.Package) {
	t.Helper()
	values = withoutUserRoles(values)
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
		t.Fatalf("install: %v; want it to wait for the workloads and fail with ErrNotReady", err)
	}
	if !strings.Contains(err.Error(), "Deployment "+ns+"/"+name+"-gadgetpm-cluster is not ready") &&
		!strings.Contains(err.Error(), "DaemonSet "+ns+"/"+name+"-gadgetpm-node is not ready") {
		t.Fatalf("install error %q names neither workload as not ready", err)
	}
	return s, pkg
}

// withoutUserRoles returns values with rbac.userRoles.create false,
// unless values set rbac.userRoles.
func withoutUserRoles(values map[string]any) map[string]any {
	out := maps.Clone(values)
	if out == nil {
		out = map[string]any{}
	}
	rbac, _ := out["rbac"].(map[string]any)
	if _, set := rbac["userRoles"]; set {
		return out
	}
	rbac = maps.Clone(rbac)
	if rbac == nil {
		rbac = map[string]any{}
	}
	rbac["userRoles"] = map[string]any{"create": false}
	out["rbac"] = rbac
	return out
}

// can asks the API server's authorizer whether the ServiceAccount may do
// verb on resource (optionally "resource/subresource") in ns ("" for every
// namespace).
func can(t *testing.T, saNS, sa, ns, group, resource, verb string) bool {
	t.Helper()
	return canNamed(t, saNS, sa, ns, group, resource, "", verb)
}

// canNamed is can for the object called name.
func canNamed(t *testing.T, saNS, sa, ns, group, resource, name, verb string) bool {
	t.Helper()
	res, sub, _ := strings.Cut(resource, "/")
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + saNS + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: group, Resource: res, Subresource: sub, Name: name,
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
// and lets the API server's authorizer judge its RBAC: each of the cluster
// role, the node role and the hooks may do what it needs, and nothing
// else; leases only in the release namespace; tokens only for the hooks'
// account.
func TestInstallNarrowRBAC(t *testing.T) {
	ns := env.Namespace(t)
	other := env.Namespace(t)
	s, pkg := install(t, ns, "narrow", map[string]any{"rbac": map[string]any{"packageResources": false}})
	name := "narrow-gadgetpm"
	clusterSA, nodeSA, hooksSA := name+"-cluster", name+"-node", "gadgetpm-hooks"

	for _, o := range []struct {
		obj      client.Object
		ns, name string
	}{
		{&corev1.ServiceAccount{}, ns, clusterSA},
		{&corev1.ServiceAccount{}, ns, nodeSA},
		{&corev1.ServiceAccount{}, ns, hooksSA},
		{&rbacv1.ClusterRole{}, "", name + "-cluster"},
		{&rbacv1.ClusterRole{}, "", name + "-node"},
		{&rbacv1.ClusterRole{}, "", name + "-hooks"},
		{&rbacv1.ClusterRoleBinding{}, "", name + "-cluster"},
		{&rbacv1.ClusterRoleBinding{}, "", name + "-node"},
		{&rbacv1.ClusterRoleBinding{}, "", name + "-hooks"},
		{&rbacv1.Role{}, ns, name + "-cluster-leader-election"},
		{&rbacv1.RoleBinding{}, ns, name + "-cluster-leader-election"},
		{&rbacv1.Role{}, ns, name + "-cluster-hook-tokens"},
		{&rbacv1.RoleBinding{}, ns, name + "-cluster-hook-tokens"},
		{&appsv1.Deployment{}, ns, name + "-cluster"},
		{&appsv1.DaemonSet{}, ns, name + "-node"},
		{&policyv1.PodDisruptionBudget{}, ns, name + "-cluster"},
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

	// Each identity may do what it needs, in any namespace.
	for _, c := range []struct {
		who, sa string
		needs   []need
	}{{"cluster role", clusterSA, clusterNeeds}, {"node role", nodeSA, nodeNeeds}, {"hooks", hooksSA, hooksNeeds}} {
		for _, n := range c.needs {
			if !can(t, ns, c.sa, other, n.group, n.resource, n.verb) {
				t.Errorf("the API server denies the %s %s on %s.%s in namespace %s", c.who, n.verb, n.resource, n.group, other)
			}
		}
	}
	for _, n := range leaseNeeds {
		if !can(t, ns, clusterSA, ns, n.group, n.resource, n.verb) {
			t.Errorf("the API server denies the cluster role %s on %s in the release namespace", n.verb, n.resource)
		}
		if can(t, ns, clusterSA, other, n.group, n.resource, n.verb) {
			t.Errorf("the cluster role may %s leases in %s too; want only its own namespace", n.verb, other)
		}
	}
	for _, n := range []need{{"apps", "deployments", "create"}, {"", "pods", "delete"}, {"rbac.authorization.k8s.io", "clusterroles", "create"},
		{"", "nodes", "update"}, {"", "secrets", "watch"}, {"gadget.kinvolk.io", "traces", "update"}} {
		if can(t, ns, clusterSA, other, n.group, n.resource, n.verb) {
			t.Errorf("with rbac.packageResources off the cluster role may still %s %s.%s", n.verb, n.resource, n.group)
		}
	}

	// The node role: its Traces, never a Secret, never a package's spec.
	for _, n := range nodeRefused {
		for _, where := range []string{other, ns, ""} {
			if can(t, ns, nodeSA, where, n.group, n.resource, n.verb) {
				t.Errorf("the node role may %s %s.%s in namespace %q", n.verb, n.resource, n.group, where)
			}
		}
	}
	if !can(t, ns, nodeSA, other, "gadget.kinvolk.io", "traces/status", "patch") {
		t.Error("the node role may not patch traces/status")
	}

	// The hooks: what the default rules read, no Secret anywhere, no token.
	for _, n := range hooksRefused {
		if can(t, ns, hooksSA, "", n.group, n.resource, n.verb) || can(t, ns, hooksSA, ns, n.group, n.resource, n.verb) {
			t.Errorf("the hooks' account may %s %s.%s", n.verb, n.resource, n.group)
		}
	}
	if !can(t, ns, hooksSA, "", "", "pods", "list") {
		t.Error("the hooks' account may not list pods cluster-wide, as kubernetes bindings commonly do")
	}

	// Tokens: the cluster role for the hooks' account only; nobody else.
	if !canNamed(t, ns, clusterSA, ns, "", "serviceaccounts/token", hooksSA, "create") {
		t.Errorf("the cluster role may not create tokens for %s/%s", ns, hooksSA)
	}
	for _, target := range []struct{ ns, sa string }{{ns, clusterSA}, {ns, nodeSA}, {ns, "default"}, {other, hooksSA}, {other, "default"}} {
		if canNamed(t, ns, clusterSA, target.ns, "", "serviceaccounts/token", target.sa, "create") {
			t.Errorf("the cluster role may create tokens for %s/%s; want only %s/%s", target.ns, target.sa, ns, hooksSA)
		}
	}
	for _, sa := range []string{nodeSA, hooksSA} {
		if canNamed(t, ns, sa, ns, "", "serviceaccounts/token", hooksSA, "create") || canNamed(t, ns, sa, ns, "", "serviceaccounts/token", clusterSA, "create") {
			t.Errorf("%s may create tokens", sa)
		}
	}

	// Uninstalling removes the cluster-scoped objects too.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Delete(ctx, pkg); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	for _, o := range []struct {
		obj      client.Object
		ns, name string
	}{
		{&rbacv1.ClusterRole{}, "", name + "-cluster"}, {&rbacv1.ClusterRole{}, "", name + "-node"}, {&rbacv1.ClusterRole{}, "", name + "-hooks"},
		{&rbacv1.ClusterRoleBinding{}, "", name + "-cluster"}, {&appsv1.DaemonSet{}, ns, name + "-node"}, {&appsv1.Deployment{}, ns, name + "-cluster"},
	} {
		if exists(t, o.obj, o.ns, o.name) {
			t.Errorf("%T %s/%s of the release is left after uninstall", o.obj, o.ns, o.name)
		}
	}
	if can(t, ns, clusterSA, other, "gadgetpm.io", "gadgetpackages", "list") || can(t, ns, nodeSA, other, "gadget.kinvolk.io", "traces", "list") {
		t.Error("the ServiceAccounts keep their rights after uninstall")
	}
}

// TestInstallRepositorySecrets: the node role reads the repository Secrets
// node.repositorySecrets names, by name, and no other Secret.
func TestInstallRepositorySecrets(t *testing.T) {
	ns := env.Namespace(t)
	repos := env.Namespace(t)
	install(t, ns, "secrets", map[string]any{"node": map[string]any{"repositorySecrets": []any{
		map[string]any{"namespace": repos, "name": "basic-auth"},
	}}})
	nodeSA := "secrets-gadgetpm-node"
	if !canNamed(t, ns, nodeSA, repos, "", "secrets", "basic-auth", "get") {
		t.Errorf("the node role may not get Secret %s/basic-auth that node.repositorySecrets names", repos)
	}
	for _, c := range []struct{ ns, name, verb string }{
		{repos, "other", "get"}, {repos, "", "list"}, {repos, "basic-auth", "watch"}, {repos, "basic-auth", "update"}, {ns, "basic-auth", "get"}, {"", "", "list"},
	} {
		if canNamed(t, ns, nodeSA, c.ns, "", "secrets", c.name, c.verb) {
			t.Errorf("the node role may %s Secret %q in namespace %q", c.verb, c.name, c.ns)
		}
	}
}

// TestInstallDefaults installs with the defaults: the broad rule lets the
// cluster role manage whatever packages bring; the workloads reach the API
// server with the security contexts the chart promises.
func TestInstallDefaults(t *testing.T) {
	ns := env.Namespace(t)
	other := env.Namespace(t)
	install(t, ns, "defaults", nil)
	name := "defaults-gadgetpm"
	for _, n := range append(append([]need{}, clusterNeeds...), need{"apps", "deployments", "create"}, need{"example.com", "widgets", "watch"}) {
		if !can(t, ns, name+"-cluster", other, n.group, n.resource, n.verb) {
			t.Errorf("the API server denies the cluster role %s on %s.%s", n.verb, n.resource, n.group)
		}
	}
	// The broad rule is the cluster role's only.
	for _, sa := range []string{name + "-node", "gadgetpm-hooks"} {
		if can(t, ns, sa, other, "apps", "deployments", "create") || can(t, ns, sa, other, "", "secrets", "list") {
			t.Errorf("%s gets rbac.packageResources' rights", sa)
		}
	}
	var ds appsv1.DaemonSet
	if !exists(t, &ds, ns, name+"-node") {
		t.Fatal("DaemonSet not installed")
	}
	if c := ds.Spec.Template.Spec.Containers[0]; c.SecurityContext == nil || c.SecurityContext.Privileged == nil || *c.SecurityContext.Privileged ||
		c.SecurityContext.Capabilities == nil || !slices.Contains(c.SecurityContext.Capabilities.Add, "BPF") || !ds.Spec.Template.Spec.HostPID {
		t.Errorf("the API server holds a node DaemonSet %+v; want unprivileged, with CAP_BPF, in the host's PID namespace", c.SecurityContext)
	}
	var d appsv1.Deployment
	if !exists(t, &d, ns, name+"-cluster") {
		t.Fatal("Deployment not installed")
	}
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("the API server holds a cluster Deployment with %v replicas and pod securityContext %+v; want 2, non-root", d.Spec.Replicas, sc)
	}
}

// TestPodSecurityStandards submits each workload's pod, as its controller
// would create it, to namespaces enforcing the Pod Security Standards: the
// API server's PodSecurity admission decides. The cluster role's pod needs
// "privileged" for its hook sandbox sidecar (CAP_SYS_ADMIN, AppArmor
// unconfined), and meets "restricted" with hooks.sandbox=off; the node
// role, with host PID and eBPF capabilities, needs "privileged", and
// nothing less than "privileged" admits either.
func TestPodSecurityStandards(t *testing.T) {
	o := mustRender(t, "gadgetpm", nil)
	off := mustRender(t, "gadgetpm", map[string]any{"hooks": map[string]any{"sandbox": "off"}})
	if len(o.deploy) != 1 || len(o.ds) != 1 || len(off.deploy) != 1 {
		t.Fatalf("rendered %d Deployment(s) and %d DaemonSet(s), want one each", len(o.deploy), len(o.ds))
	}
	tests := []struct {
		name     string
		spec     corev1.PodSpec
		admitted map[string]bool // level -> admitted
		// Every refusal names refusedFor (what needs more) and never
		// notFor (what needs nothing).
		refusedFor, notFor string
	}{
		{"cluster role", o.deploy[0].Spec.Template.Spec, map[string]bool{"restricted": false, "baseline": false, "privileged": true}, `container "hook-sandbox"`, `container "operator"`},
		{"cluster role, hooks.sandbox=off", off.deploy[0].Spec.Template.Spec, map[string]bool{"restricted": true, "baseline": true}, "", ""},
		{"node role", o.ds[0].Spec.Template.Spec, map[string]bool{"restricted": false, "baseline": false, "privileged": true}, "hostPID=true", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for level, want := range tt.admitted {
				ns := env.Namespace(t)
				var nsObj corev1.Namespace
				if err := env.Client.Get(context.Background(), client.ObjectKey{Name: ns}, &nsObj); err != nil {
					t.Fatal(err)
				}
				if nsObj.Labels == nil {
					nsObj.Labels = map[string]string{}
				}
				nsObj.Labels["pod-security.kubernetes.io/enforce"] = level
				if err := env.Client.Update(context.Background(), &nsObj); err != nil {
					t.Fatalf("label namespace %s: %v", ns, err)
				}
				// The pod's own ServiceAccount: the cluster role's pod
				// projects its token, which needs a named account.
				sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tt.spec.ServiceAccountName, Namespace: ns}}
				if err := env.Client.Create(context.Background(), sa); err != nil {
					t.Fatalf("create ServiceAccount %s/%s: %v", ns, sa.Name, err)
				}
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pss", Namespace: ns}, Spec: *tt.spec.DeepCopy()}
				err := env.Client.Create(context.Background(), pod)
				switch {
				case want && err != nil:
					t.Errorf("the %s pod is refused under the %q Pod Security Standard: %v", tt.name, level, err)
				case !want && err == nil:
					t.Errorf("the %s pod is admitted under the %q Pod Security Standard; it should need more", tt.name, level)
				case !want && !apierrors.IsForbidden(err):
					t.Errorf("the %s pod under %q: %v; want a PodSecurity refusal", tt.name, level, err)
				case !want && (!strings.Contains(err.Error(), tt.refusedFor) || tt.notFor != "" && strings.Contains(err.Error(), tt.notFor)):
					t.Errorf("the %s pod under %q: %v; want it refused for %s, never for %s", tt.name, level, err, tt.refusedFor, tt.notFor)
				}
			}
		})
	}
}
