package chartcheck_test

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	helmaction "helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	helmchartutil "helm.sh/helm/v3/pkg/chartutil"
	helmreleaseutil "helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/gadgetpm/gadgetpm/internal/cmdline"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

const releaseNS = "gadgetpm-system"

func loadChart(t testing.TB) *helmchart.Chart {
	t.Helper()
	ch, err := helmloader.Load(filepath.Join(env.RepoRoot, "charts", "gadgetpm"))
	if err != nil {
		t.Fatalf("load charts/gadgetpm: %v", err)
	}
	return ch
}

// objects is a rendered chart, decoded.
type objects struct {
	sa       []*corev1.ServiceAccount
	cr       []*rbacv1.ClusterRole
	crb      []*rbacv1.ClusterRoleBinding
	role     []*rbacv1.Role
	rb       []*rbacv1.RoleBinding
	deploy   []*appsv1.Deployment
	ds       []*appsv1.DaemonSet
	pdb      []*policyv1.PodDisruptionBudget
	svc      []*corev1.Service
	manifest string
}

// render renders the chart with values over its defaults, as
// `helm install <release> charts/gadgetpm -n gadgetpm-system` would.
func render(t testing.TB, release string, values map[string]any) (*objects, error) {
	t.Helper()
	r, err := nelm.Render(loadChart(t), values, nelm.RenderOptions{Namespace: releaseNS, ReleaseName: release, KubeVersion: "v1.36.3"})
	if err != nil {
		return nil, err
	}
	return decode(t, r.Manifest), nil
}

func decode(t testing.TB, manifest string) *objects {
	t.Helper()
	out := &objects{manifest: manifest}
	dec := clientgoscheme.Codecs.UniversalDeserializer()
	for name, doc := range helmreleaseutil.SplitManifests(manifest) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode %s: %v\n%s", name, err, doc)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			out.sa = append(out.sa, o)
		case *rbacv1.ClusterRole:
			out.cr = append(out.cr, o)
		case *rbacv1.ClusterRoleBinding:
			out.crb = append(out.crb, o)
		case *rbacv1.Role:
			out.role = append(out.role, o)
		case *rbacv1.RoleBinding:
			out.rb = append(out.rb, o)
		case *appsv1.Deployment:
			out.deploy = append(out.deploy, o)
		case *appsv1.DaemonSet:
			out.ds = append(out.ds, o)
		case *policyv1.PodDisruptionBudget:
			out.pdb = append(out.pdb, o)
		case *corev1.Service:
			out.svc = append(out.svc, o)
		default:
			t.Fatalf("the chart renders an unexpected %T (%s)", obj, name)
		}
	}
	return out
}

func mustRender(t testing.TB, release string, values map[string]any) *objects {
	t.Helper()
	o, err := render(t, release, values)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return o
}

// named returns the object of list called name, failing the test when
// there is none.
func named[T interface{ GetName() string }](t testing.TB, list []T, name string) T {
	t.Helper()
	for _, o := range list {
		if o.GetName() == name {
			return o
		}
	}
	names := make([]string, len(list))
	for i, o := range list {
		names[i] = o.GetName()
	}
	t.Fatalf("%T %q not rendered; rendered: %q", *new(T), name, names)
	return *new(T)
}

// allows reports whether rules grant verb on resource of group, with RBAC's
// wildcards. A rule limited to resourceNames does not count.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	match := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if match(r.APIGroups, group) && match(r.Resources, resource) && match(r.Verbs, verb) && len(r.ResourceNames) == 0 {
			return true
		}
	}
	return false
}

// need is one permission a role uses.
type need struct{ group, resource, verb string }

// clusterNeeds are what the cluster role does in every namespace; its
// ClusterRole must grant them whatever the values say.
var clusterNeeds = []need{
	{"gadgetpm.io", "packagerepositories", "watch"},
	{"gadgetpm.io", "gadgetpackages", "list"},
	{"gadgetpm.io", "gadgetpackages", "get"},    // unsubscribe reads status.subscriptions
	{"gadgetpm.io", "gadgetpackages", "update"}, // hooks' config-values patches persist into spec.settings
	{"gadgetpm.io", "gadgetpackages/status", "update"},
	{"gadgetpm.io", "packagerepositories/status", "patch"},
	{"gadgetpm.io", "gadgetpackages/finalizers", "update"},
	{"", "secrets", "create"}, // Helm release storage
	{"", "secrets", "list"},
	{"", "secrets", "update"},
	{"", "secrets", "delete"},
	{"", "secrets", "get"}, // repository credentials
	{"", "configmaps", "create"},
	{"", "configmaps", "watch"},
	{"", "events", "create"},
	{"events.k8s.io", "events", "patch"},
	{"", "namespaces", "list"},
	{"", "namespaces", "watch"},
	{"", "pods", "watch"}, // hooks' kubernetes bindings
	{"apps", "deployments", "list"},
	{"", "serviceaccounts", "impersonate"}, // packages act as their spec.serviceAccountName
	{"", "serviceaccounts", "get"},
}

// nodeNeeds are what the node role does in every namespace.
var nodeNeeds = []need{
	{"gadget.kinvolk.io", "traces", "get"},
	{"gadget.kinvolk.io", "traces", "list"},
	{"gadget.kinvolk.io", "traces", "watch"},
	{"gadget.kinvolk.io", "traces", "update"},
	{"gadget.kinvolk.io", "traces", "patch"}, // the operation annotation and the finalizer
	{"gadget.kinvolk.io", "traces/status", "get"},
	{"gadget.kinvolk.io", "traces/status", "update"},
	{"gadget.kinvolk.io", "traces/status", "patch"},
	{"gadget.kinvolk.io", "traces/finalizers", "update"}, // output ConfigMaps owned by a Trace
	{"", "configmaps", "create"},                         // Trace output, ExternalResource mode
	{"", "configmaps", "get"},
	{"", "configmaps", "update"},
	{"", "configmaps", "list"},
	{"", "configmaps", "watch"},
	{"", "configmaps", "delete"}, // beyond spec.historyLimit
	{"gadgetpm.io", "gadgetpackages", "get"},
	{"gadgetpm.io", "gadgetpackages", "list"},
	{"gadgetpm.io", "gadgetpackages", "watch"},
	{"gadgetpm.io", "gadgetpackages/status", "patch"}, // its entries of status.subscriptions
	{"gadgetpm.io", "packagerepositories", "get"},     // downloading the gadget
	{"", "pods", "get"},
	{"", "pods", "list"},
	{"", "pods", "watch"},
	{"", "nodes", "get"},      // a Trace's spec.node must be a Node
	{"", "namespaces", "get"}, // the privileged-traces label
	{"", "namespaces", "list"},
	{"", "namespaces", "watch"},
	{"", "events", "create"},
	{"events.k8s.io", "events", "patch"},
	{"authentication.k8s.io", "tokenreviews", "create"},        // readers of Stream-mode Traces: who they are
	{"authorization.k8s.io", "subjectaccessreviews", "create"}, // and whether they may get the Trace
}

// nodeRefused are what the node role must never do.
var nodeRefused = []need{
	{"", "secrets", "get"},
	{"", "secrets", "list"},
	{"", "secrets", "watch"},
	{"gadgetpm.io", "gadgetpackages", "create"},
	{"gadgetpm.io", "gadgetpackages", "update"},
	{"gadgetpm.io", "gadgetpackages", "delete"},
	{"gadgetpm.io", "packagerepositories", "update"},
	{"gadget.kinvolk.io", "traces", "create"},
	{"gadget.kinvolk.io", "traces", "delete"},
	{"", "pods", "delete"},
	{"", "serviceaccounts/token", "create"},
	{"", "serviceaccounts", "impersonate"},
	{"coordination.k8s.io", "leases", "update"},
	{"apps", "deployments", "create"},
}

// hooksNeeds are the default rules of the hooks' account.
var hooksNeeds = []need{
	{"", "pods", "list"},
	{"", "configmaps", "watch"},
	{"", "namespaces", "get"},
	{"", "services", "list"},
	{"apps", "deployments", "watch"},
}

// hooksRefused are what the hooks' account must never do by default.
var hooksRefused = []need{
	{"", "secrets", "get"},
	{"", "secrets", "list"},
	{"", "serviceaccounts/token", "create"},
	{"", "configmaps", "create"},
	{"", "pods", "delete"},
	{"gadgetpm.io", "gadgetpackages", "delete"},
	// Settings patches go through the hook protocol; one account serves
	// every package, so a patch right would reach other packages' settings.
	{"gadgetpm.io", "gadgetpackages", "patch"},
	{"rbac.authorization.k8s.io", "clusterroles", "create"},
}

var leaseNeeds = []need{
	{"coordination.k8s.io", "leases", "get"},
	{"coordination.k8s.io", "leases", "create"},
	{"coordination.k8s.io", "leases", "update"},
}

// args is a container's whole command line.
func args(c corev1.Container) []string {
	return append(append([]string{}, c.Command...), c.Args...)
}

// hasFlag reports whether argv holds the flag, with or without a value.
func hasFlag(argv []string, flag string) bool {
	return slices.ContainsFunc(argv, func(a string) bool { return a == flag || strings.HasPrefix(a, flag+"=") })
}

// volumesByMount maps each mount path of c to its volume in spec.
func volumesByMount(spec corev1.PodSpec, c corev1.Container) map[string]corev1.Volume {
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	out := map[string]corev1.Volume{}
	for _, m := range c.VolumeMounts {
		out[m.MountPath] = vols[m.Name]
	}
	return out
}

func checkBinding(t *testing.T, kind string, ref rbacv1.RoleRef, subjects []rbacv1.Subject, role, sa string) {
	t.Helper()
	if ref.Name != role || len(subjects) != 1 || subjects[0].Kind != "ServiceAccount" || subjects[0].Name != sa || subjects[0].Namespace != releaseNS {
		t.Errorf("%s binds %s to %+v, want %s to ServiceAccount %s/%s", kind, ref.Name, subjects, role, releaseNS, sa)
	}
}

func TestRenderDefaults(t *testing.T) {
	o := mustRender(t, "gadgetpm", nil)
	if len(o.sa) != 3 || len(o.cr) != 7 || len(o.crb) != 3 || len(o.role) != 2 || len(o.rb) != 2 || len(o.deploy) != 1 || len(o.ds) != 1 || len(o.pdb) != 1 || len(o.svc) != 1 {
		t.Fatalf("rendered %d ServiceAccount, %d ClusterRole, %d ClusterRoleBinding, %d Role, %d RoleBinding, %d Deployment, %d DaemonSet, %d PodDisruptionBudget, %d Service; "+
			"want 3, 7, 3, 2, 2, 1, 1, 1, 1 (cluster role, node role, hooks; and the four user roles)",
			len(o.sa), len(o.cr), len(o.crb), len(o.role), len(o.rb), len(o.deploy), len(o.ds), len(o.pdb), len(o.svc))
	}
	clusterSA, nodeSA, hooksSA := named(t, o.sa, "gadgetpm-cluster"), named(t, o.sa, "gadgetpm-node"), named(t, o.sa, "gadgetpm-hooks")
	for _, sa := range []*corev1.ServiceAccount{clusterSA, nodeSA, hooksSA} {
		if sa.Namespace != releaseNS {
			t.Errorf("ServiceAccount %s in %q, want the release namespace %s", sa.Name, sa.Namespace, releaseNS)
		}
	}
	if hooksSA.AutomountServiceAccountToken == nil || *hooksSA.AutomountServiceAccountToken {
		t.Error("the hooks' ServiceAccount lets its token be mounted; hooks get tokens per run only")
	}

	// RBAC: each role what it does, and nothing of the others'.
	clusterCR, nodeCR, hooksCR := named(t, o.cr, "gadgetpm-cluster"), named(t, o.cr, "gadgetpm-node"), named(t, o.cr, "gadgetpm-hooks")
	for _, c := range []struct {
		who   string
		rules []rbacv1.PolicyRule
		needs []need
	}{{"cluster role", clusterCR.Rules, clusterNeeds}, {"node role", nodeCR.Rules, nodeNeeds}, {"hooks", hooksCR.Rules, hooksNeeds}} {
		for _, n := range c.needs {
			if !allows(c.rules, n.group, n.resource, n.verb) {
				t.Errorf("the %s's ClusterRole does not grant %s on %s.%s", c.who, n.verb, n.resource, n.group)
			}
		}
	}
	if !allows(clusterCR.Rules, "apps", "deployments", "create") {
		t.Error("rbac.packageResources is on by default but the cluster role's ClusterRole does not grant what packages create")
	}
	for _, c := range []struct {
		who     string
		rules   []rbacv1.PolicyRule
		refused []need
	}{{"node role", nodeCR.Rules, nodeRefused}, {"hooks", hooksCR.Rules, hooksRefused}} {
		for _, n := range c.refused {
			if allows(c.rules, n.group, n.resource, n.verb) {
				t.Errorf("the %s's ClusterRole grants %s on %s.%s", c.who, n.verb, n.resource, n.group)
			}
		}
		for _, r := range c.rules {
			if slices.Contains(r.APIGroups, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.Verbs, "*") {
				t.Errorf("the %s's rule %+v has a wildcard", c.who, r)
			}
		}
	}
	leaseRole, tokenRole := named(t, o.role, "gadgetpm-cluster-leader-election"), named(t, o.role, "gadgetpm-cluster-hook-tokens")
	if leaseRole.Namespace != releaseNS || tokenRole.Namespace != releaseNS {
		t.Errorf("lease Role in %q, token Role in %q; want both in the release namespace %s", leaseRole.Namespace, tokenRole.Namespace, releaseNS)
	}
	for _, n := range leaseNeeds {
		if !allows(leaseRole.Rules, n.group, n.resource, n.verb) {
			t.Errorf("lease Role does not grant %s on %s.%s", n.verb, n.resource, n.group)
		}
	}
	if len(tokenRole.Rules) != 1 || !slices.Equal(tokenRole.Rules[0].Resources, []string{"serviceaccounts/token"}) ||
		!slices.Equal(tokenRole.Rules[0].ResourceNames, []string{"gadgetpm-hooks"}) || !slices.Equal(tokenRole.Rules[0].Verbs, []string{"create"}) {
		t.Errorf("token Role rules %+v, want create on serviceaccounts/token of gadgetpm-hooks only", tokenRole.Rules)
	}
	for _, b := range []struct {
		kind, role, sa string
		ref            rbacv1.RoleRef
		subjects       []rbacv1.Subject
	}{
		{"ClusterRoleBinding", "gadgetpm-cluster", clusterSA.Name, named(t, o.crb, "gadgetpm-cluster").RoleRef, named(t, o.crb, "gadgetpm-cluster").Subjects},
		{"ClusterRoleBinding", "gadgetpm-node", nodeSA.Name, named(t, o.crb, "gadgetpm-node").RoleRef, named(t, o.crb, "gadgetpm-node").Subjects},
		{"ClusterRoleBinding", "gadgetpm-hooks", hooksSA.Name, named(t, o.crb, "gadgetpm-hooks").RoleRef, named(t, o.crb, "gadgetpm-hooks").Subjects},
		{"RoleBinding", leaseRole.Name, clusterSA.Name, named(t, o.rb, leaseRole.Name).RoleRef, named(t, o.rb, leaseRole.Name).Subjects},
		{"RoleBinding", tokenRole.Name, clusterSA.Name, named(t, o.rb, tokenRole.Name).RoleRef, named(t, o.rb, tokenRole.Name).Subjects},
	} {
		checkBinding(t, b.kind, b.ref, b.subjects, b.role, b.sa)
	}

	checkClusterWorkload(t, o, clusterSA.Name)
	checkNodeWorkload(t, o, nodeSA.Name)

	// The metrics Service reaches both roles' metrics ports.
	svc := o.svc[0]
	for _, labels := range []map[string]string{o.deploy[0].Spec.Template.Labels, o.ds[0].Spec.Template.Labels} {
		for k, v := range svc.Spec.Selector {
			if labels[k] != v {
				t.Errorf("Service selector %s=%s does not match pod labels %v", k, v, labels)
			}
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("Service ports %+v, want one to the pods' metrics port", svc.Spec.Ports)
	}
	// The workloads' selectors keep the roles' pods apart.
	for k, v := range o.deploy[0].Spec.Selector.MatchLabels {
		if o.ds[0].Spec.Template.Labels[k] != v {
			return
		}
	}
	t.Errorf("the Deployment's selector %v also selects the DaemonSet's pods %v", o.deploy[0].Spec.Selector.MatchLabels, o.ds[0].Spec.Template.Labels)
}

// checkContainerCommon checks what both roles' containers share.
func checkContainerCommon(t *testing.T, who string, c corev1.Container) {
	t.Helper()
	if c.Image != "ghcr.io/gadgetpm/gadgetpm:0.1.0" {
		t.Errorf("%s: image %q, want the chart's appVersion as tag", who, c.Image)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("%s: NODE_NAME = %+v, want it from the fieldRef spec.nodeName", who, e)
	}
	if e := env["POD_NAMESPACE"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("%s: POD_NAMESPACE = %+v, want it from the fieldRef metadata.namespace", who, e)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["metrics"] != 8080 || ports["probes"] != 8081 {
		t.Errorf("%s: container ports %v, want metrics 8080 and probes 8081", who, ports)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "probes" {
			t.Errorf("%s: %s probe = %+v, want GET %s on port probes", who, p.name, p.probe, p.path)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: securityContext %+v, want not privileged, no privilege escalation, read-only root file system, every capability dropped", who, sc)
	}
	vols := volumesByMount(corev1.PodSpec{}, c) // names only
	for _, m := range []string{"/tmp", "/run/gadgetpm"} {
		if _, ok := vols[m]; !ok {
			t.Errorf("%s: nothing writable mounted at %s on the read-only root file system", who, m)
		}
	}
	for _, m := range c.VolumeMounts {
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			t.Errorf("%s: %s is mounted Bidirectional, which only privileged containers may", who, m.MountPath)
		}
	}
}

func checkClusterWorkload(t *testing.T, o *objects, sa string) {
	t.Helper()
	d := o.deploy[0]
	if d.Name != "gadgetpm-cluster" || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("Deployment %s with %v replicas, want gadgetpm-cluster with 2", d.Name, d.Spec.Replicas)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != sa {
		t.Errorf("cluster role pods run as %q, want %q", spec.ServiceAccountName, sa)
	}
	if spec.HostPID || spec.HostNetwork || spec.HostIPC {
		t.Errorf("cluster role pods share host namespaces: PID %v, network %v, IPC %v", spec.HostPID, spec.HostNetwork, spec.HostIPC)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("cluster role pod securityContext %+v, want runAsNonRoot, uid 65532 and seccomp RuntimeDefault", psc)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("cluster role: %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	checkContainerCommon(t, "cluster role", c)
	if c.SecurityContext != nil && c.SecurityContext.Capabilities != nil && len(c.SecurityContext.Capabilities.Add) > 0 {
		t.Errorf("cluster role container adds capabilities %v; it needs none", c.SecurityContext.Capabilities.Add)
	}
	argv := args(c)
	for _, want := range []string{"gadgetpm", "operator", "--role=cluster", "--leader-elect=true", "--leader-election-namespace=" + releaseNS,
		"--node-name=$(NODE_NAME)", "--data-dir=/var/lib/gadgetpm", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081", "--v=0",
		"--helm-qps=20", "--patcher-burst=200", "--kube-events-qps=20", "--debug-socket=/run/gadgetpm/debug.sock",
		"--hook-sandbox=on", "--hook-sandbox-socket=" + sandboxSocket, "--hook-user=65534:65534", "--hook-service-account=gadgetpm-hooks", "--hook-token-expiry=10m"} {
		if !slices.Contains(argv, want) {
			t.Errorf("cluster role command line %q lacks %q", argv, want)
		}
	}
	if hasFlag(argv, "--namespaces") {
		t.Errorf("cluster role command line %q restricts namespaces by default", argv)
	}
	vols := volumesByMount(spec, c)
	for path, v := range vols {
		if v.HostPath != nil {
			t.Errorf("cluster role mounts host path %s at %s", v.HostPath.Path, path)
		}
	}
	for _, m := range []string{"/var/lib/gadgetpm", "/tmp", "/run/gadgetpm"} {
		if vols[m].EmptyDir == nil {
			t.Errorf("cluster role: %s is %+v, want an emptyDir", m, vols[m])
		}
	}
	checkOperatorToken(t, spec, c)
	checkSandboxSidecar(t, spec, c)
	if got := d.Spec.Template.Annotations["kubectl.kubernetes.io/default-container"]; got != "operator" {
		t.Errorf("cluster role pod's default container %q, want operator: kubectl exec deploy/... -- gadgetpm dump must reach it", got)
	}

	// Spread over nodes, one at a time through drains.
	aff := spec.Affinity
	if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Fatalf("cluster role affinity %+v, want one preferred pod anti-affinity term", aff)
	}
	term := aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if term.TopologyKey != "kubernetes.io/hostname" || term.LabelSelector == nil || !maps.Equal(term.LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("anti-affinity term %+v, want the Deployment's pods spread over kubernetes.io/hostname", term)
	}
	pdb := o.pdb[0]
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil ||
		pdb.Spec.Selector == nil || !maps.Equal(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) || pdb.Namespace != releaseNS {
		t.Errorf("PodDisruptionBudget %s/%s %+v, want maxUnavailable 1 over the Deployment's pods", pdb.Namespace, pdb.Name, pdb.Spec)
	}
}

// sandboxSocket is where the cluster role's operator finds the hook
// sandbox server.
const sandboxSocket = "/run/gadgetpm-hook-sandbox/sandbox.sock"

// sandboxCaps are the hook-sandbox container's capabilities, sorted.
var sandboxCaps = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID", "SYS_ADMIN"}

// checkOperatorToken: no container of the pod gets a service-account token
// but the operator's, which mounts it explicitly where client-go looks for
// it, as the ServiceAccount admission plugin would have.
func checkOperatorToken(t *testing.T, spec corev1.PodSpec, operator corev1.Container) {
	t.Helper()
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("cluster role pods mount the service-account token into every container; want automountServiceAccountToken: false and the token in the operator container only")
	}
	v, ok := volumesByMount(spec, operator)[saDir]
	if !ok || v.Projected == nil {
		t.Fatalf("the operator container has no projected volume at %s: it could not reach the API server (%+v)", saDir, v)
	}
	var token, ca, namespace bool
	for _, src := range v.Projected.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			token = src.ServiceAccountToken.Path == "token" && src.ServiceAccountToken.ExpirationSeconds != nil && *src.ServiceAccountToken.ExpirationSeconds == 3607 && src.ServiceAccountToken.Audience == ""
		case src.ConfigMap != nil:
			ca = src.ConfigMap.Name == "kube-root-ca.crt" && len(src.ConfigMap.Items) == 1 && src.ConfigMap.Items[0].Key == "ca.crt" && src.ConfigMap.Items[0].Path == "ca.crt"
		case src.DownwardAPI != nil:
			namespace = len(src.DownwardAPI.Items) == 1 && src.DownwardAPI.Items[0].Path == "namespace" && src.DownwardAPI.Items[0].FieldRef != nil && src.DownwardAPI.Items[0].FieldRef.FieldPath == "metadata.namespace"
		}
	}
	if !token || !ca || !namespace {
		t.Errorf("the operator's %s holds token %v (3607s, the API server's audience), ca.crt %v (kube-root-ca.crt), namespace %v: %+v", saDir, token, ca, namespace, v.Projected.Sources)
	}
}

// saDir is where client-go reads a pod's token, CA and namespace.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// checkSandboxSidecar: hooks.sandbox=server (the default) runs the hook
// sandbox server in a native sidecar holding exactly the sandbox's
// capabilities and no token, sharing the socket, the data directory and
// /tmp with the operator at the same paths.
func checkSandboxSidecar(t *testing.T, spec corev1.PodSpec, operator corev1.Container) {
	t.Helper()
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != "hook-sandbox" {
		t.Fatalf("cluster role init containers %v, want the hook-sandbox sidecar", spec.InitContainers)
	}
	c := spec.InitContainers[0]
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("hook-sandbox restartPolicy %v, want Always: a native sidecar that starts before the operator and stops after it", c.RestartPolicy)
	}
	if c.Image != operator.Image || c.ImagePullPolicy != operator.ImagePullPolicy {
		t.Errorf("hook-sandbox image %s (%s), want the operator's %s (%s)", c.Image, c.ImagePullPolicy, operator.Image, operator.ImagePullPolicy)
	}
	argv := args(c)
	for _, want := range []string{"gadgetpm", "hook-sandbox", "--socket=" + sandboxSocket, "--allow-uid=65532", "--hook-user=65534:65534", "--hide=" + filepath.Dir(sandboxSocket)} {
		if !slices.Contains(argv, want) {
			t.Errorf("hook-sandbox command line %q lacks %q", argv, want)
		}
	}
	if psc := spec.SecurityContext; psc == nil || psc.RunAsUser == nil || !slices.Contains(argv, "--allow-uid="+strconv.FormatInt(*psc.RunAsUser, 10)) {
		t.Errorf("hook-sandbox serves %q, not the operator's uid (pod securityContext %+v)", argv, psc)
	}
	if p := c.StartupProbe; p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, []string{"test", "-S", sandboxSocket}) {
		t.Errorf("hook-sandbox startupProbe %+v, want the socket's existence: the operator starts only once it answers", p)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("hook-sandbox securityContext %+v, want named capabilities", sc)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if !slices.Equal(add, sandboxCaps) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("hook-sandbox capabilities add %v drop %v, want exactly %v added to none", add, sc.Capabilities.Drop, sandboxCaps)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot ||
		sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Errorf("hook-sandbox securityContext %+v, want uid 0 (added capabilities are effective for root only), not privileged, no privilege escalation, read-only root, seccomp RuntimeDefault, AppArmor unconfined (the runtimes' default profiles deny mount)", sc)
	}
	sidecar, op := volumesByMount(spec, c), volumesByMount(spec, operator)
	for _, path := range []string{filepath.Dir(sandboxSocket), "/var/lib/gadgetpm", "/tmp"} {
		if sidecar[path].EmptyDir == nil || sidecar[path].Name != op[path].Name {
			t.Errorf("%s: the sidecar mounts %q, the operator %q; want the same emptyDir at the same path in both", path, sidecar[path].Name, op[path].Name)
		}
	}
	for path, v := range sidecar {
		if strings.HasPrefix(path, "/var/run/secrets") || strings.HasPrefix(path, "/run/secrets") || v.Projected != nil || v.Secret != nil {
			t.Errorf("hook-sandbox mounts %s (%+v): it must hold no credentials", path, v.VolumeSource)
		}
	}
}

func checkNodeWorkload(t *testing.T, o *objects, sa string) {
	t.Helper()
	ds := o.ds[0]
	if ds.Name != "gadgetpm-node" {
		t.Errorf("DaemonSet %s, want gadgetpm-node", ds.Name)
	}
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != sa {
		t.Errorf("node role pods run as %q, want %q", spec.ServiceAccountName, sa)
	}
	if !spec.HostPID {
		t.Error("node role pods do not share the host's PID namespace: the enricher cannot find the processes behind mount namespaces")
	}
	if spec.HostNetwork || spec.HostIPC {
		t.Errorf("node role pods share the host's network (%v) or IPC (%v) namespace", spec.HostNetwork, spec.HostIPC)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("node role: %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	checkContainerCommon(t, "node role", c)
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "stream" && p.ContainerPort == 8443 }) {
		t.Errorf("node role ports %+v lack the stream listener's, stream 8443", c.Ports)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("node role container securityContext %+v, want named capabilities", sc)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if want := []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE"}; !slices.Equal(add, want) {
		t.Errorf("node role capabilities %v, want exactly %v", add, want)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("node role securityContext %+v, want uid 0 (added capabilities are effective for root only) and seccomp RuntimeDefault", sc)
	}
	argv := args(c)
	if !slices.Equal(c.Command, []string{"gadgetpm-node"}) {
		t.Errorf("node role command %q, want gadgetpm-node", c.Command)
	}
	// gadgetpm-node takes every argument the chart gives it.
	nodeCmd := &cobra.Command{Use: "gadgetpm-node"}
	cmdline.AddNodeFlags(nodeCmd, &cmdline.NodeFlags{})
	if err := nodeCmd.ParseFlags(c.Args); err != nil {
		t.Errorf("gadgetpm-node refuses the node role's args %q: %v", c.Args, err)
	}
	for _, want := range []string{"--node-name=$(NODE_NAME)", "--data-dir=/var/lib/gadgetpm", "--debug-socket=/run/gadgetpm/debug.sock",
		"--metrics-bind-address=:8080", "--health-probe-bind-address=:8081", "--kube-api-qps=20", "--v=0",
		"--stream-bind-address=:8443", "--stream-max-clients-per-trace=4", "--stream-max-clients=64"} {
		if !slices.Contains(argv, want) {
			t.Errorf("node role command line %q lacks %q", argv, want)
		}
	}
	for _, flag := range []string{"--leader-elect", "--leader-election-namespace", "--helm-qps", "--patcher-qps", "--kube-events-qps", "--hook-sandbox", "--hook-service-account"} {
		if hasFlag(argv, flag) {
			t.Errorf("node role command line %q has the cluster role's %s", argv, flag)
		}
	}
	vols := volumesByMount(spec, c)
	for mount, host := range map[string]string{
		"/sys/kernel/btf":     "/sys/kernel/btf",
		"/sys/kernel/tracing": "/sys/kernel/tracing",
		"/sys/fs/bpf":         "/sys/fs/bpf",
		"/var/lib/gadgetpm":   "/var/lib/gadgetpm",
	} {
		if v := vols[mount]; v.HostPath == nil || v.HostPath.Path != host {
			t.Errorf("node role: %s is mounted from %+v, want host path %q", mount, v.VolumeSource, host)
		}
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Operator == corev1.TolerationOpExists && t.Key == "" }) {
		t.Errorf("node role tolerations %+v: a Trace may target any node, so the default tolerates every taint", spec.Tolerations)
	}
}

func TestRenderVariants(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		check  func(t *testing.T, o *objects)
	}{
		{
			name: "narrow RBAC with extra rules",
			values: map[string]any{"rbac": map[string]any{"packageResources": false, "extraRules": []any{
				map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"statefulsets"}, "verbs": []any{"get", "list"}},
			}}},
			check: func(t *testing.T, o *objects) {
				rules := named(t, o.cr, "gadgetpm-cluster").Rules
				for _, n := range clusterNeeds {
					if !allows(rules, n.group, n.resource, n.verb) {
						t.Errorf("without packageResources the cluster role lost %s on %s.%s", n.verb, n.resource, n.group)
					}
				}
				if !allows(rules, "apps", "statefulsets", "list") {
					t.Error("extraRules were not added")
				}
				for _, n := range []need{{"apps", "deployments", "create"}, {"", "services", "create"}, {"", "secrets", "escalate"}, {"", "secrets", "watch"},
					{"", "serviceaccounts/token", "create"}, {"gadget.kinvolk.io", "traces", "update"}, {"", "nodes", "list"}} {
					if allows(rules, n.group, n.resource, n.verb) {
						t.Errorf("rbac.packageResources=false still grants %s on %s.%s: %+v", n.verb, n.resource, n.group, rules)
					}
				}
				for _, r := range rules {
					if slices.Contains(r.APIGroups, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.Verbs, "*") {
						t.Errorf("rule %+v has a wildcard", r)
					}
				}
				if allows(named(t, o.cr, "gadgetpm-node").Rules, "apps", "statefulsets", "list") {
					t.Error("rbac.extraRules reached the node role")
				}
			},
		},
		{
			name:   "leader election off, one replica",
			values: map[string]any{"operator": map[string]any{"leaderElection": map[string]any{"enabled": false}}, "cluster": map[string]any{"replicas": 1}},
			check: func(t *testing.T, o *objects) {
				for _, r := range o.role {
					if strings.HasSuffix(r.Name, "-leader-election") {
						t.Errorf("Role %s for leases without leader election", r.Name)
					}
				}
				argv := o.deploy[0].Spec.Template.Spec.Containers[0].Args
				if !slices.Contains(argv, "--leader-elect=false") || hasFlag(argv, "--leader-election-namespace") {
					t.Errorf("args %q, want --leader-elect=false and no Lease namespace", argv)
				}
				if *o.deploy[0].Spec.Replicas != 1 || len(o.pdb) != 0 {
					t.Errorf("%d replicas and %d PodDisruptionBudget(s), want 1 and none (one replica cannot keep one up through a drain)", *o.deploy[0].Spec.Replicas, len(o.pdb))
				}
			},
		},
		{
			name:   "three replicas, own affinity",
			values: map[string]any{"cluster": map[string]any{"replicas": 3, "affinity": map[string]any{"nodeAffinity": map[string]any{}}}},
			check: func(t *testing.T, o *objects) {
				if *o.deploy[0].Spec.Replicas != 3 || len(o.pdb) != 1 || o.pdb[0].Spec.MaxUnavailable.IntValue() != 1 {
					t.Errorf("%d replicas, PodDisruptionBudgets %+v; want 3 and one with maxUnavailable 1", *o.deploy[0].Spec.Replicas, o.pdb)
				}
				if aff := o.deploy[0].Spec.Template.Spec.Affinity; aff == nil || aff.NodeAffinity == nil || aff.PodAntiAffinity != nil {
					t.Errorf("affinity %+v, want cluster.affinity as given, instead of the default spread", aff)
				}
			},
		},
		{
			name: "lease elsewhere, namespaces, ports, data dir, log level, image, scheduling",
			values: map[string]any{
				"operator": map[string]any{
					"leaderElection": map[string]any{"namespace": "kube-system"},
					"namespaces":     []any{"gadget", "team-a"},
					"logLevel":       2,
					"clients":        map[string]any{"kubeAPI": map[string]any{"qps": 50, "burst": 80}, "helm": map[string]any{"qps": 5, "burst": 10}, "patcher": map[string]any{"qps": 100, "burst": 200}, "kubeEvents": map[string]any{"qps": 20, "burst": 40}},
					"extraArgs":      []any{"--stop-grace=1m"},
				},
				"metrics": map[string]any{"port": 9090, "service": map[string]any{"port": 9100}},
				"probes":  map[string]any{"port": 9091},
				"image":   map[string]any{"repository": "registry.example.com/gadgetpm", "tag": "v9.9.9", "pullPolicy": "Always"},
				"node":    map[string]any{"dataDir": map[string]any{"hostPath": "/data/gadgetpm"}, "nodeSelector": map[string]any{"gadgets": "yes"}, "tolerations": []any{}},
				"cluster": map[string]any{"dataDir": map[string]any{"sizeLimit": "5Gi"}},
			},
			check: func(t *testing.T, o *objects) {
				lease := named(t, o.role, "gadgetpm-cluster-leader-election")
				if lease.Namespace != "kube-system" || named(t, o.rb, lease.Name).Namespace != "kube-system" {
					t.Errorf("lease Role in %s; want kube-system", lease.Namespace)
				}
				if s := named(t, o.rb, lease.Name).Subjects[0]; s.Namespace != releaseNS {
					t.Errorf("RoleBinding subject in %s, want the ServiceAccount's namespace %s", s.Namespace, releaseNS)
				}
				cc, nc := o.deploy[0].Spec.Template.Spec.Containers[0], o.ds[0].Spec.Template.Spec.Containers[0]
				shared := []string{"--namespaces=gadget,team-a", "--v=2", "--kube-api-qps=50", "--kube-api-burst=80",
					"--metrics-bind-address=:9090", "--health-probe-bind-address=:9091", "--stop-grace=1m"}
				for _, want := range append([]string{"--leader-election-namespace=kube-system", "--helm-qps=5"}, shared...) {
					if !slices.Contains(cc.Args, want) {
						t.Errorf("cluster role args %q lack %q", cc.Args, want)
					}
				}
				for _, want := range shared {
					if !slices.Contains(nc.Args, want) {
						t.Errorf("node role args %q lack %q", nc.Args, want)
					}
				}
				for _, c := range []corev1.Container{cc, nc} {
					if c.Image != "registry.example.com/gadgetpm:v9.9.9" || c.ImagePullPolicy != corev1.PullAlways {
						t.Errorf("image %s (%s), want registry.example.com/gadgetpm:v9.9.9 (Always)", c.Image, c.ImagePullPolicy)
					}
					if c.LivenessProbe.HTTPGet.Port.String() != "probes" || c.Ports[1].ContainerPort != 9091 || c.Ports[0].ContainerPort != 9090 {
						t.Errorf("ports %+v, want metrics 9090 and probes 9091", c.Ports)
					}
				}
				if p := o.svc[0].Spec.Ports[0]; p.Port != 9100 || p.TargetPort.String() != "metrics" {
					t.Errorf("Service port %d -> %s, want 9100 -> metrics", p.Port, p.TargetPort.String())
				}
				spec := o.ds[0].Spec.Template.Spec
				if v := volumesByMount(spec, nc)["/var/lib/gadgetpm"]; v.HostPath == nil || v.HostPath.Path != "/data/gadgetpm" {
					t.Errorf("node role data volume %+v, want host path /data/gadgetpm", v)
				}
				if v := volumesByMount(o.deploy[0].Spec.Template.Spec, cc)["/var/lib/gadgetpm"]; v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.String() != "5Gi" {
					t.Errorf("cluster role data volume %+v, want an emptyDir of at most 5Gi", v)
				}
				if spec.NodeSelector["gadgets"] != "yes" || len(spec.Tolerations) != 0 {
					t.Errorf("nodeSelector %v, tolerations %v; want gadgets=yes and none", spec.NodeSelector, spec.Tolerations)
				}
			},
		},
		{
			name: "tenancy: default service account, no cross-namespace refs, cluster resource namespace",
			values: map[string]any{"tenancy": map[string]any{
				"defaultServiceAccount": "deployer", "noCrossNamespaceRefs": true, "clusterResourceNamespace": "repos",
			}},
			check: func(t *testing.T, o *objects) {
				cc, nc := o.deploy[0].Spec.Template.Spec.Containers[0], o.ds[0].Spec.Template.Spec.Containers[0]
				both := []string{"--no-cross-namespace-refs=true", "--cluster-resource-namespace=repos"}
				for _, want := range append([]string{"--default-service-account=deployer"}, both...) {
					if !slices.Contains(cc.Args, want) {
						t.Errorf("cluster role args %q lack %q", cc.Args, want)
					}
				}
				for _, want := range both {
					if !slices.Contains(nc.Args, want) {
						t.Errorf("node role args %q lack %q", nc.Args, want)
					}
				}
				// the node role has no packages to act for
				if hasFlag(nc.Args, "--default-service-account") {
					t.Errorf("node role args %q name --default-service-account", nc.Args)
				}
				nodeCmd := &cobra.Command{Use: "gadgetpm-node"}
				cmdline.AddNodeFlags(nodeCmd, &cmdline.NodeFlags{})
				if err := nodeCmd.ParseFlags(nc.Args); err != nil {
					t.Errorf("gadgetpm-node refuses the node role's args %q: %v", nc.Args, err)
				}
			},
		},
		{
			name:   "a shard: both roles reconcile only what operator.watchLabelSelector matches",
			values: map[string]any{"operator": map[string]any{"watchLabelSelector": "sharding.gadgetpm.io/key=shard1"}},
			check: func(t *testing.T, o *objects) {
				want := "--watch-label-selector=sharding.gadgetpm.io/key=shard1"
				for role, args := range map[string][]string{"cluster": o.deploy[0].Spec.Template.Spec.Containers[0].Args, "node": o.ds[0].Spec.Template.Spec.Containers[0].Args} {
					if !slices.Contains(args, want) {
						t.Errorf("%s role args %q lack %q", role, args, want)
					}
				}
			},
		},
		{
			name: "existing service accounts, no metrics Service",
			values: map[string]any{
				"cluster": map[string]any{"serviceAccount": map[string]any{"create": false, "name": "ops"}},
				"node":    map[string]any{"serviceAccount": map[string]any{"create": false, "name": "ops-node"}},
				"hooks":   map[string]any{"serviceAccount": map[string]any{"create": false, "name": "ops-hooks"}},
				"metrics": map[string]any{"service": map[string]any{"enabled": false}},
			},
			check: func(t *testing.T, o *objects) {
				if len(o.sa) != 0 || len(o.svc) != 0 {
					t.Errorf("%d ServiceAccount(s), %d Service(s); want none", len(o.sa), len(o.svc))
				}
				if n := o.deploy[0].Spec.Template.Spec.ServiceAccountName; n != "ops" {
					t.Errorf("cluster role pods run as %q, want ops", n)
				}
				if n := o.ds[0].Spec.Template.Spec.ServiceAccountName; n != "ops-node" {
					t.Errorf("node role pods run as %q, want ops-node", n)
				}
				for crb, sa := range map[string]string{"gadgetpm-cluster": "ops", "gadgetpm-node": "ops-node", "gadgetpm-hooks": "ops-hooks"} {
					if s := named(t, o.crb, crb).Subjects[0]; s.Name != sa {
						t.Errorf("ClusterRoleBinding %s subject %s, want %s", crb, s.Name, sa)
					}
				}
				if r := named(t, o.role, "gadgetpm-cluster-hook-tokens"); !slices.Equal(r.Rules[0].ResourceNames, []string{"ops-hooks"}) {
					t.Errorf("token Role for %v, want ops-hooks", r.Rules[0].ResourceNames)
				}
				if !slices.Contains(o.deploy[0].Spec.Template.Spec.Containers[0].Args, "--hook-service-account=ops-hooks") {
					t.Errorf("args %q, want --hook-service-account=ops-hooks", o.deploy[0].Spec.Template.Spec.Containers[0].Args)
				}
			},
		},
		{
			name: "hooks: own rules, token expiry, sandbox auto",
			values: map[string]any{"hooks": map[string]any{"sandbox": "auto", "user": "1000:1000", "tokenExpiry": "1h", "rbac": map[string]any{"rules": []any{
				map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps"}, "verbs": []any{"get", "create"}},
			}}}},
			check: func(t *testing.T, o *objects) {
				argv := o.deploy[0].Spec.Template.Spec.Containers[0].Args
				for _, want := range []string{"--hook-sandbox=auto", "--hook-user=1000:1000", "--hook-token-expiry=1h"} {
					if !slices.Contains(argv, want) {
						t.Errorf("args %q lack %q", argv, want)
					}
				}
				checkNoSandboxSidecar(t, o)
				rules := named(t, o.cr, "gadgetpm-hooks").Rules
				if !allows(rules, "", "configmaps", "create") || allows(rules, "", "pods", "list") {
					t.Errorf("hooks' rules %+v, want hooks.rbac.rules instead of the default", rules)
				}
			},
		},
		{
			name:   "hooks.sandbox=off: hooks in the operator container",
			values: map[string]any{"hooks": map[string]any{"sandbox": "off"}},
			check: func(t *testing.T, o *objects) {
				if argv := o.deploy[0].Spec.Template.Spec.Containers[0].Args; !slices.Contains(argv, "--hook-sandbox=off") {
					t.Errorf("args %q, want --hook-sandbox=off", argv)
				}
				checkNoSandboxSidecar(t, o)
				spec := o.deploy[0].Spec.Template.Spec
				checkOperatorToken(t, spec, spec.Containers[0])
			},
		},
		{
			name: "hook sandbox server: own user, resources and profiles",
			values: map[string]any{"hooks": map[string]any{"user": "1000:1000", "sandboxServer": map[string]any{
				"resources":       map[string]any{"limits": map[string]any{"memory": "1Gi"}},
				"seccompProfile":  map[string]any{"type": "Localhost", "localhostProfile": "gadgetpm-sandbox.json"},
				"appArmorProfile": map[string]any{"type": "Localhost", "localhostProfile": "gadgetpm-sandbox"},
			}}},
			check: func(t *testing.T, o *objects) {
				c := o.deploy[0].Spec.Template.Spec.InitContainers[0]
				if !slices.Contains(c.Args, "--hook-user=1000:1000") {
					t.Errorf("hook-sandbox args %q, want --hook-user=1000:1000", c.Args)
				}
				if m := c.Resources.Limits.Memory(); m.String() != "1Gi" {
					t.Errorf("hook-sandbox memory limit %s, want 1Gi", m)
				}
				sc := c.SecurityContext
				if sc.SeccompProfile == nil || sc.SeccompProfile.LocalhostProfile == nil || *sc.SeccompProfile.LocalhostProfile != "gadgetpm-sandbox.json" ||
					sc.AppArmorProfile == nil || sc.AppArmorProfile.LocalhostProfile == nil || *sc.AppArmorProfile.LocalhostProfile != "gadgetpm-sandbox" {
					t.Errorf("hook-sandbox profiles seccomp %+v, AppArmor %+v; want hooks.sandboxServer's", sc.SeccompProfile, sc.AppArmorProfile)
				}
			},
		},
		{
			name:   "hooks act as the cluster role",
			values: map[string]any{"hooks": map[string]any{"serviceAccount": map[string]any{"name": ""}}},
			check: func(t *testing.T, o *objects) {
				if len(o.sa) != 2 || slices.ContainsFunc(o.cr, func(r *rbacv1.ClusterRole) bool { return strings.HasSuffix(r.Name, "-hooks") }) ||
					slices.ContainsFunc(o.role, func(r *rbacv1.Role) bool { return strings.HasSuffix(r.Name, "-hook-tokens") }) {
					t.Errorf("with no hooks' account: %d ServiceAccounts, ClusterRoles %v, Roles %v; want no hooks' objects", len(o.sa), o.cr, o.role)
				}
				if argv := o.deploy[0].Spec.Template.Spec.Containers[0].Args; !slices.Contains(argv, "--hook-service-account=") {
					t.Errorf("args %q, want --hook-service-account= (empty)", argv)
				}
			},
		},
		{
			name: "node: own command, SYS_ADMIN, repository Secrets",
			values: map[string]any{"node": map[string]any{
				"command":           []any{"/usr/local/bin/gadgetpm-node"},
				"extraCapabilities": []any{"SYS_ADMIN"},
				"seccompProfile":    map[string]any{"type": "Unconfined"},
				"repositorySecrets": []any{
					map[string]any{"namespace": "repos", "name": "basic-auth"},
					map[string]any{"namespace": "repos", "name": "keyring"},
					map[string]any{"namespace": "team-a", "name": "oci-creds"},
				},
			}},
			check: func(t *testing.T, o *objects) {
				c := o.ds[0].Spec.Template.Spec.Containers[0]
				if !slices.Equal(c.Command, []string{"/usr/local/bin/gadgetpm-node"}) || !slices.Contains(c.Args, "--node-name=$(NODE_NAME)") {
					t.Errorf("command %q args %q, want node.command then the chart's args", c.Command, c.Args)
				}
				if !slices.Contains(c.SecurityContext.Capabilities.Add, "SYS_ADMIN") || !slices.Contains(c.SecurityContext.Capabilities.Add, "BPF") {
					t.Errorf("capabilities %v, want SYS_ADMIN added to the default ones", c.SecurityContext.Capabilities.Add)
				}
				if c.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
					t.Errorf("seccomp %+v, want node.seccompProfile", c.SecurityContext.SeccompProfile)
				}
				got := map[string][]string{}
				for _, r := range o.role {
					if r.Name != "gadgetpm-node-repository-secrets" {
						continue
					}
					if len(r.Rules) != 1 || !slices.Equal(r.Rules[0].Resources, []string{"secrets"}) || !slices.Equal(r.Rules[0].Verbs, []string{"get"}) {
						t.Errorf("Role %s/%s rules %+v, want get on the named Secrets only", r.Namespace, r.Name, r.Rules)
					}
					got[r.Namespace] = r.Rules[0].ResourceNames
				}
				if want := map[string][]string{"repos": {"basic-auth", "keyring"}, "team-a": {"oci-creds"}}; !maps.EqualFunc(got, want, slices.Equal) {
					t.Errorf("repository Secret Roles %v, want %v", got, want)
				}
				for _, rb := range o.rb {
					if rb.Name == "gadgetpm-node-repository-secrets" {
						checkBinding(t, "RoleBinding "+rb.Namespace+"/"+rb.Name, rb.RoleRef, rb.Subjects, rb.Name, "gadgetpm-node")
					}
				}
				if allows(named(t, o.cr, "gadgetpm-node").Rules, "", "secrets", "get") {
					t.Error("the node role's ClusterRole grants Secrets")
				}
			},
		},
		{
			name:   "stream certificate from a Secret",
			values: map[string]any{"node": map[string]any{"stream": map[string]any{"certSecret": "stream-tls", "port": 9443, "maxClientsPerTrace": 2, "maxClients": 10}}},
			check: func(t *testing.T, o *objects) {
				spec := o.ds[0].Spec.Template.Spec
				c := spec.Containers[0]
				argv := args(c)
				for _, want := range []string{"--stream-bind-address=:9443", "--stream-cert-dir=/etc/gadgetpm/stream-tls", "--stream-max-clients-per-trace=2", "--stream-max-clients=10"} {
					if !slices.Contains(argv, want) {
						t.Errorf("node role command line %q lacks %q", argv, want)
					}
				}
				if v := volumesByMount(spec, c)["/etc/gadgetpm/stream-tls"]; v.Secret == nil || v.Secret.SecretName != "stream-tls" {
					t.Errorf("/etc/gadgetpm/stream-tls mounts %+v, want Secret stream-tls", v)
				}
			},
		},
		{
			name:   "no stream",
			values: map[string]any{"node": map[string]any{"stream": map[string]any{"enabled": false}}},
			check: func(t *testing.T, o *objects) {
				c := o.ds[0].Spec.Template.Spec.Containers[0]
				if argv := args(c); !slices.Contains(argv, "--stream-bind-address=0") || hasFlag(argv, "--stream-cert-dir") {
					t.Errorf("node.stream.enabled=false: command line %q, want --stream-bind-address=0", argv)
				}
				for _, p := range c.Ports {
					if p.Name == "stream" {
						t.Errorf("node.stream.enabled=false still exposes port %+v", p)
					}
				}
			},
		},
		{
			name:   "no RBAC",
			values: map[string]any{"rbac": map[string]any{"create": false}},
			check: func(t *testing.T, o *objects) {
				if len(o.cr)+len(o.crb)+len(o.role)+len(o.rb) != 0 {
					t.Error("rbac.create=false still renders RBAC objects")
				}
			},
		},
		{
			name:   "release named after the chart and a full name override",
			values: map[string]any{"fullnameOverride": "gpm"},
			check: func(t *testing.T, o *objects) {
				if o.deploy[0].Name != "gpm-cluster" || o.ds[0].Name != "gpm-node" || o.svc[0].Name != "gpm-metrics" {
					t.Errorf("names %s, %s, %s; want gpm-cluster, gpm-node, gpm-metrics", o.deploy[0].Name, o.ds[0].Name, o.svc[0].Name)
				}
				for _, n := range []string{"gpm-cluster", "gpm-node", "gpm-hooks"} {
					named(t, o.cr, n)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustRender(t, "gadgetpm", tt.values))
		})
	}
}

// checkNoSandboxSidecar: hooks.sandbox off and auto run hooks in the
// operator container, so the pod has no sidecar and nothing privileged.
func checkNoSandboxSidecar(t *testing.T, o *objects) {
	t.Helper()
	spec := o.deploy[0].Spec.Template.Spec
	if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 {
		t.Errorf("cluster role pod with %d init container(s) and %d container(s), want the operator alone", len(spec.InitContainers), len(spec.Containers))
	}
	if argv := spec.Containers[0].Args; hasFlag(argv, "--hook-sandbox-socket") {
		t.Errorf("args %q name a sandbox server that does not run", argv)
	}
	for _, v := range spec.Volumes {
		if v.Name == "hook-sandbox" {
			t.Errorf("volume %s without the sidecar", v.Name)
		}
	}
}

// TestRenderRefusesBadValues: a mistake in values stops the install with a
// message naming the value, before anything reaches the cluster.
func TestRenderRefusesBadValues(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"unknown key", map[string]any{"replicas": 3}, []string{"replicas"}},
		{"pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, []string{"pullPolicy"}},
		{"port out of range", map[string]any{"metrics": map[string]any{"port": 70000}}, []string{"metrics", "port"}},
		{"same port twice", map[string]any{"probes": map[string]any{"port": 8080}}, []string{"metrics.port and probes.port are both 8080"}},
		{"stream on the metrics port", map[string]any{"node": map[string]any{"stream": map[string]any{"port": 8080}}}, []string{"node.stream.port and metrics.port are both 8080"}},
		{"no stream client", map[string]any{"node": map[string]any{"stream": map[string]any{"maxClients": 0}}}, []string{"maxClients"}},
		{"negative QPS", map[string]any{"operator": map[string]any{"clients": map[string]any{"helm": map[string]any{"qps": -1, "burst": 1}}}}, []string{"helm", "qps"}},
		{"relative data dir", map[string]any{"node": map[string]any{"dataDir": map[string]any{"hostPath": "gadgetpm"}}}, []string{"hostPath"}},
		{"stop grace not a duration", map[string]any{"operator": map[string]any{"stopGrace": "30 seconds"}}, []string{"stopGrace"}},
		{"log level not a number", map[string]any{"operator": map[string]any{"logLevel": "debug"}}, []string{"logLevel"}},
		{"bad namespace", map[string]any{"operator": map[string]any{"namespaces": []any{"Team_A"}}}, []string{"namespaces"}},
		{"no cluster service account name", map[string]any{"cluster": map[string]any{"serviceAccount": map[string]any{"create": false}}}, []string{"cluster.serviceAccount.name is required"}},
		{"no node service account name", map[string]any{"node": map[string]any{"serviceAccount": map[string]any{"create": false}}}, []string{"node.serviceAccount.name is required"}},
		{"rule without verbs", map[string]any{"rbac": map[string]any{"extraRules": []any{map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}}}}}, []string{"extraRules", "verbs"}},
		{"no cluster replica", map[string]any{"cluster": map[string]any{"replicas": 0}}, []string{"cluster", "replicas"}},
		{"two cluster roles without a Lease", map[string]any{"operator": map[string]any{"leaderElection": map[string]any{"enabled": false}}},
			[]string{"cluster.replicas is 2 but operator.leaderElection.enabled is false", "set cluster.replicas=1"}},
		{"sandbox maybe", map[string]any{"hooks": map[string]any{"sandbox": "maybe"}}, []string{"hooks", "sandbox", "server", "off"}},
		{"sandbox on without its privileges", map[string]any{"hooks": map[string]any{"sandbox": "on"}}, []string{"hooks.sandbox=on", "CAP_SYS_ADMIN", "use hooks.sandbox=server", "or hooks.sandbox=off"}},
		{"sandbox server with an unknown key", map[string]any{"hooks": map[string]any{"sandboxServer": map[string]any{"capabilities": []any{"SYS_ADMIN"}}}}, []string{"sandboxServer", "capabilities"}},
		{"sandbox server's AppArmor profile", map[string]any{"hooks": map[string]any{"sandboxServer": map[string]any{"appArmorProfile": map[string]any{"type": "unconfined"}}}}, []string{"appArmorProfile", "type"}},
		{"hook user not uid:gid", map[string]any{"hooks": map[string]any{"user": "nobody"}}, []string{"hooks", "user"}},
		{"default service account not a name", map[string]any{"tenancy": map[string]any{"defaultServiceAccount": "Deployer_1"}}, []string{"tenancy", "defaultServiceAccount"}},
		{"cluster resource namespace not a name", map[string]any{"tenancy": map[string]any{"clusterResourceNamespace": "Repos"}}, []string{"tenancy", "clusterResourceNamespace"}},
		{"cross-namespace refs not a boolean", map[string]any{"tenancy": map[string]any{"noCrossNamespaceRefs": "yes"}}, []string{"tenancy", "noCrossNamespaceRefs"}},
		{"token expiry not a duration", map[string]any{"hooks": map[string]any{"tokenExpiry": "ten minutes"}}, []string{"tokenExpiry"}},
		{"hooks' rule without verbs", map[string]any{"hooks": map[string]any{"rbac": map[string]any{"rules": []any{map[string]any{"resources": []any{"pods"}}}}}}, []string{"rules", "verbs"}},
		{"node command empty", map[string]any{"node": map[string]any{"command": []any{}}}, []string{"node", "command"}},
		{"repository Secret without namespace", map[string]any{"node": map[string]any{"repositorySecrets": []any{map[string]any{"name": "creds"}}}}, []string{"repositorySecrets", "namespace"}},
		{"capability with prefix", map[string]any{"node": map[string]any{"extraCapabilities": []any{"cap_sys_admin"}}}, []string{"extraCapabilities"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, "gadgetpm", tt.values)
			if err == nil {
				t.Fatal("rendered; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// notes renders NOTES.txt the way `helm install` prints it.
func notes(t *testing.T, values map[string]any) string {
	t.Helper()
	inst := helmaction.NewInstall(&helmaction.Configuration{Log: func(string, ...any) {}})
	inst.ClientOnly, inst.DryRun = true, true
	inst.Namespace, inst.ReleaseName = releaseNS, "gadgetpm"
	kv, err := helmchartutil.ParseKubeVersion("v1.36.3")
	if err != nil {
		t.Fatal(err)
	}
	inst.KubeVersion = kv
	rel, err := inst.RunWithContext(context.Background(), loadChart(t), values)
	if err != nil {
		t.Fatalf("install (client only): %v", err)
	}
	return rel.Info.Notes
}

func TestNotes(t *testing.T) {
	n := notes(t, nil)
	for _, want := range []string{
		"kubectl -n gadgetpm-system rollout status deploy/gadgetpm-cluster",
		"kubectl -n gadgetpm-system rollout status ds/gadgetpm-node",
		"kubectl -n gadgetpm-system exec deploy/gadgetpm-cluster -- gadgetpm dump",
		"Hooks act as the ServiceAccount gadgetpm-system/gadgetpm-hooks",
		"kubectl get gadgetpackages -A",
		"rbac.packageResources is on",
		"Hooks run in the hook sandbox, in each cluster-role pod's hook-sandbox\ncontainer",
	} {
		if !strings.Contains(n, want) {
			t.Errorf("NOTES lack %q:\n%s", want, n)
		}
	}
	n = notes(t, map[string]any{"rbac": map[string]any{"packageResources": false}, "operator": map[string]any{"leaderElection": map[string]any{"enabled": false}}, "cluster": map[string]any{"replicas": 1}})
	if strings.Contains(n, "rbac.packageResources is on") || !strings.Contains(n, "Leader election is off") {
		t.Errorf("NOTES with narrow RBAC and no leader election:\n%s", n)
	}
	n = notes(t, map[string]any{"hooks": map[string]any{"sandbox": "off"}})
	if strings.Contains(n, "hook-sandbox") || !strings.Contains(n, "can read the cluster role's service-account token") {
		t.Errorf("NOTES with hooks.sandbox=off do not say that hooks can read the cluster role's token:\n%s", n)
	}
	n = notes(t, map[string]any{"hooks": map[string]any{"serviceAccount": map[string]any{"name": ""}}})
	if strings.Contains(n, "Hooks act as the ServiceAccount") || !strings.Contains(n, "hooks act with the cluster role's own") {
		t.Errorf("NOTES without a hooks' account do not say that hooks act as the cluster role:\n%s", n)
	}
}
