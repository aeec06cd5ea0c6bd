package chartcheck_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	helmchartutil "helm.sh/helm/v3/pkg/chartutil"
	helmreleaseutil "helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

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
	ds       []*appsv1.DaemonSet
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
		case *appsv1.DaemonSet:
			out.ds = append(out.ds, o)
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

// allows reports whether rules grant verb on resource of group, with RBAC's
// wildcards.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	match := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if match(r.APIGroups, group) && match(r.Resources, resource) && match(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// need is one permission the operator uses.
type need struct{ group, resource, verb string }

// clusterNeeds are what the operator does in every namespace; the
// ClusterRole must grant them whatever the values say.
var clusterNeeds = []need{
	{"gadgetpm.io", "packagerepositories", "watch"},
	{"gadgetpm.io", "gadgetpackages", "list"},
	{"gadgetpm.io", "gadgetpackages", "update"}, // hooks' config-values patches persist into spec.settings
	{"gadgetpm.io", "gadgetpackages/status", "update"},
	{"gadgetpm.io", "packagerepositories/status", "patch"},
	{"gadgetpm.io", "gadgetpackages/finalizers", "update"},
	{"gadgetpm.io", "gadgetpackages/status", "patch"}, // nodes apply their subscriptions
	{"gadget.kinvolk.io", "traces", "get"},
	{"gadget.kinvolk.io", "traces", "list"},
	{"gadget.kinvolk.io", "traces", "watch"},
	{"gadget.kinvolk.io", "traces", "update"},
	{"gadget.kinvolk.io", "traces", "patch"}, // the operation annotation and the finalizer
	{"gadget.kinvolk.io", "traces/status", "get"},
	{"gadget.kinvolk.io", "traces/status", "update"},
	{"gadget.kinvolk.io", "traces/status", "patch"},
	{"gadget.kinvolk.io", "traces/finalizers", "update"}, // output ConfigMaps owned by a Trace
	{"", "secrets", "create"},                            // Helm release storage
	{"", "secrets", "delete"},
	{"", "secrets", "get"},       // repository credentials
	{"", "configmaps", "create"}, // Trace output, ExternalResource mode
	{"", "configmaps", "get"},
	{"", "configmaps", "list"},
	{"", "configmaps", "delete"}, // beyond spec.historyLimit
	{"", "events", "create"},
	{"events.k8s.io", "events", "patch"},
	{"", "nodes", "get"},
	{"", "nodes", "list"},
	{"", "nodes", "watch"}, // a Trace's spec.node must be a Node
	{"", "pods", "get"},
	{"", "pods", "list"},
	{"", "namespaces", "list"},
	{"", "namespaces", "watch"},
	{"", "pods", "watch"},
}

var leaseNeeds = []need{
	{"coordination.k8s.io", "leases", "get"},
	{"coordination.k8s.io", "leases", "create"},
	{"coordination.k8s.io", "leases", "update"},
}

func TestRenderDefaults(t *testing.T) {
	o := mustRender(t, "gadgetpm", nil)
	if len(o.sa) != 1 || len(o.cr) != 1 || len(o.crb) != 1 || len(o.role) != 1 || len(o.rb) != 1 || len(o.ds) != 1 || len(o.svc) != 1 {
		t.Fatalf("rendered %d ServiceAccount, %d ClusterRole, %d ClusterRoleBinding, %d Role, %d RoleBinding, %d DaemonSet, %d Service; want one each",
			len(o.sa), len(o.cr), len(o.crb), len(o.role), len(o.rb), len(o.ds), len(o.svc))
	}
	sa, cr, ds := o.sa[0], o.cr[0], o.ds[0]
	if sa.Name != "gadgetpm" || sa.Namespace != releaseNS {
		t.Errorf("ServiceAccount %s/%s, want %s/gadgetpm", sa.Namespace, sa.Name, releaseNS)
	}

	// RBAC: everything the operator does, the leases in its namespace, and
	// the broad rule for packages, on by default.
	for _, n := range clusterNeeds {
		if !allows(cr.Rules, n.group, n.resource, n.verb) {
			t.Errorf("ClusterRole does not grant %s on %s.%s", n.verb, n.resource, n.group)
		}
	}
	if !allows(cr.Rules, "apps", "deployments", "create") {
		t.Error("rbac.packageResources is on by default but the ClusterRole does not grant what packages create")
	}
	role := o.role[0]
	if role.Namespace != releaseNS {
		t.Errorf("lease Role in %q, want the release namespace %s", role.Namespace, releaseNS)
	}
	for _, n := range leaseNeeds {
		if !allows(role.Rules, n.group, n.resource, n.verb) {
			t.Errorf("Role does not grant %s on %s.%s", n.verb, n.resource, n.group)
		}
	}
	for _, b := range []struct {
		kind, roleRef string
		subjects      []rbacv1.Subject
		ref           rbacv1.RoleRef
	}{
		{"ClusterRoleBinding", cr.Name, o.crb[0].Subjects, o.crb[0].RoleRef},
		{"RoleBinding", role.Name, o.rb[0].Subjects, o.rb[0].RoleRef},
	} {
		if b.ref.Name != b.roleRef || len(b.subjects) != 1 || b.subjects[0].Kind != "ServiceAccount" || b.subjects[0].Name != sa.Name || b.subjects[0].Namespace != releaseNS {
			t.Errorf("%s binds %s to %+v, want %s to ServiceAccount %s/%s", b.kind, b.ref.Name, b.subjects, b.roleRef, releaseNS, sa.Name)
		}
	}

	// The DaemonSet.
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("DaemonSet pods do not share the host's PID namespace")
	}
	if spec.ServiceAccountName != sa.Name {
		t.Errorf("pods run as %q, want %q", spec.ServiceAccountName, sa.Name)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the operator container is not privileged: it cannot load eBPF programs")
	}
	if c.Image != "ghcr.io/gadgetpm/gadgetpm:0.1.0" {
		t.Errorf("image %q, want the chart's appVersion as tag", c.Image)
	}
	args := append(append([]string{}, c.Command...), c.Args...)
	for _, want := range []string{"gadgetpm", "operator", "--node-name=$(NODE_NAME)", "--data-dir=/var/lib/gadgetpm", "--leader-elect=true",
		"--leader-election-namespace=" + releaseNS, "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081", "--v=0",
		"--helm-qps=20", "--patcher-burst=200", "--debug-socket=/run/gadgetpm/debug.sock"} {
		if !slices.Contains(args, want) {
			t.Errorf("command line %q lacks %q", args, want)
		}
	}
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--namespaces") }) {
		t.Errorf("command line %q restricts namespaces by default", args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME = %+v, want it from the fieldRef spec.nodeName", e)
	}
	if e := env["POD_NAMESPACE"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE = %+v, want it from the fieldRef metadata.namespace", e)
	}

	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]string{} // mount path -> host path
	for _, m := range c.VolumeMounts {
		if hp, ok := hostPaths[m.Name]; ok {
			mounted[m.MountPath] = hp
		}
	}
	for mount, host := range map[string]string{
		"/sys/kernel/btf":     "/sys/kernel/btf",
		"/sys/kernel/tracing": "/sys/kernel/tracing",
		"/sys/fs/bpf":         "/sys/fs/bpf",
		"/sys/fs/cgroup":      "/sys/fs/cgroup",
		"/host/proc":          "/proc",
		"/var/lib/gadgetpm":   "/var/lib/gadgetpm",
	} {
		if mounted[mount] != host {
			t.Errorf("%s is mounted from host path %q, want %q", mount, mounted[mount], host)
		}
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["metrics"] != 8080 || ports["probes"] != 8081 {
		t.Errorf("container ports %v, want metrics 8080 and probes 8081", ports)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "probes" {
			t.Errorf("%s probe = %+v, want GET %s on port probes", p.name, p.probe, p.path)
		}
	}

	// The metrics Service reaches the pods' metrics port.
	svc := o.svc[0]
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v || ds.Spec.Selector.MatchLabels[k] != v {
			t.Errorf("Service selector %s=%s does not match the DaemonSet's pods", k, v)
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("Service ports %+v, want one to the pods' metrics port", svc.Spec.Ports)
	}

	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Operator == corev1.TolerationOpExists && t.Key == "" }) {
		t.Errorf("tolerations %+v: a Trace may target any node, so the default tolerates every taint", spec.Tolerations)
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
				map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}, "verbs": []any{"get", "list"}},
			}}},
			check: func(t *testing.T, o *objects) {
				rules := o.cr[0].Rules
				for _, n := range clusterNeeds {
					if !allows(rules, n.group, n.resource, n.verb) {
						t.Errorf("without packageResources the ClusterRole lost %s on %s.%s", n.verb, n.resource, n.group)
					}
				}
				if !allows(rules, "apps", "deployments", "list") {
					t.Error("extraRules were not added")
				}
				if allows(rules, "apps", "deployments", "create") || allows(rules, "", "services", "create") || allows(rules, "", "secrets", "escalate") {
					t.Errorf("rbac.packageResources=false still grants more than asked: %+v", rules)
				}
				for _, r := range rules {
					if slices.Contains(r.APIGroups, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.Verbs, "*") {
						t.Errorf("rule %+v has a wildcard", r)
					}
				}
			},
		},
		{
			name:   "leader election off",
			values: map[string]any{"operator": map[string]any{"leaderElection": map[string]any{"enabled": false}}},
			check: func(t *testing.T, o *objects) {
				if len(o.role) != 0 || len(o.rb) != 0 {
					t.Errorf("%d Role(s), %d RoleBinding(s) for leases without leader election, want none", len(o.role), len(o.rb))
				}
				args := o.ds[0].Spec.Template.Spec.Containers[0].Args
				if !slices.Contains(args, "--leader-elect=false") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--leader-election-namespace") }) {
					t.Errorf("args %q, want --leader-elect=false and no Lease namespace", args)
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
				"metrics":      map[string]any{"port": 9090, "service": map[string]any{"port": 9100}},
				"probes":       map[string]any{"port": 9091},
				"dataDir":      map[string]any{"hostPath": "/data/gadgetpm"},
				"image":        map[string]any{"repository": "registry.example.com/gadgetpm", "tag": "v9.9.9", "pullPolicy": "Always"},
				"nodeSelector": map[string]any{"gadgets": "yes"},
				"tolerations":  []any{},
			},
			check: func(t *testing.T, o *objects) {
				if o.role[0].Namespace != "kube-system" || o.rb[0].Namespace != "kube-system" {
					t.Errorf("lease Role in %s, RoleBinding in %s; want kube-system", o.role[0].Namespace, o.rb[0].Namespace)
				}
				if s := o.rb[0].Subjects[0]; s.Namespace != releaseNS {
					t.Errorf("RoleBinding subject in %s, want the ServiceAccount's namespace %s", s.Namespace, releaseNS)
				}
				spec := o.ds[0].Spec.Template.Spec
				c := spec.Containers[0]
				for _, want := range []string{"--leader-election-namespace=kube-system", "--namespaces=gadget,team-a", "--v=2", "--kube-api-qps=50", "--kube-api-burst=80", "--helm-qps=5",
					"--metrics-bind-address=:9090", "--health-probe-bind-address=:9091", "--stop-grace=1m"} {
					if !slices.Contains(c.Args, want) {
						t.Errorf("args %q lack %q", c.Args, want)
					}
				}
				if c.Image != "registry.example.com/gadgetpm:v9.9.9" || c.ImagePullPolicy != corev1.PullAlways {
					t.Errorf("image %s (%s), want registry.example.com/gadgetpm:v9.9.9 (Always)", c.Image, c.ImagePullPolicy)
				}
				if c.LivenessProbe.HTTPGet.Port.String() != "probes" || c.Ports[1].ContainerPort != 9091 || c.Ports[0].ContainerPort != 9090 {
					t.Errorf("ports %+v, want metrics 9090 and probes 9091", c.Ports)
				}
				if p := o.svc[0].Spec.Ports[0]; p.Port != 9100 || p.TargetPort.String() != "metrics" {
					t.Errorf("Service port %d -> %s, want 9100 -> metrics", p.Port, p.TargetPort.String())
				}
				found := false
				for _, v := range spec.Volumes {
					if v.Name == "data" && v.HostPath != nil {
						found = v.HostPath.Path == "/data/gadgetpm"
					}
				}
				if !found {
					t.Errorf("data volume %+v, want host path /data/gadgetpm", spec.Volumes)
				}
				if spec.NodeSelector["gadgets"] != "yes" || len(spec.Tolerations) != 0 {
					t.Errorf("nodeSelector %v, tolerations %v; want gadgets=yes and none", spec.NodeSelector, spec.Tolerations)
				}
			},
		},
		{
			name:   "existing service account, no metrics Service",
			values: map[string]any{"serviceAccount": map[string]any{"create": false, "name": "ops"}, "metrics": map[string]any{"service": map[string]any{"enabled": false}}},
			check: func(t *testing.T, o *objects) {
				if len(o.sa) != 0 || len(o.svc) != 0 {
					t.Errorf("%d ServiceAccount(s), %d Service(s); want none", len(o.sa), len(o.svc))
				}
				if n := o.ds[0].Spec.Template.Spec.ServiceAccountName; n != "ops" {
					t.Errorf("pods run as %q, want ops", n)
				}
				if s := o.crb[0].Subjects[0]; s.Name != "ops" {
					t.Errorf("ClusterRoleBinding subject %s, want ops", s.Name)
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
				if o.ds[0].Name != "gpm" || o.cr[0].Name != "gpm" || o.svc[0].Name != "gpm-metrics" {
					t.Errorf("names %s, %s, %s; want gpm, gpm, gpm-metrics", o.ds[0].Name, o.cr[0].Name, o.svc[0].Name)
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
		{"negative QPS", map[string]any{"operator": map[string]any{"clients": map[string]any{"helm": map[string]any{"qps": -1, "burst": 1}}}}, []string{"helm", "qps"}},
		{"relative data dir", map[string]any{"dataDir": map[string]any{"hostPath": "gadgetpm"}}, []string{"hostPath"}},
		{"stop grace not a duration", map[string]any{"operator": map[string]any{"stopGrace": "30 seconds"}}, []string{"stopGrace"}},
		{"log level not a number", map[string]any{"operator": map[string]any{"logLevel": "debug"}}, []string{"logLevel"}},
		{"bad namespace", map[string]any{"operator": map[string]any{"namespaces": []any{"Team_A"}}}, []string{"namespaces"}},
		{"no service account name", map[string]any{"serviceAccount": map[string]any{"create": false}}, []string{"serviceAccount.name is required"}},
		{"rule without verbs", map[string]any{"rbac": map[string]any{"extraRules": []any{map[string]any{"apiGroups": []any{"apps"}, "resources": []any{"deployments"}}}}}, []string{"extraRules", "verbs"}},
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
		"kubectl -n gadgetpm-system rollout status ds/gadgetpm",
		"kubectl -n gadgetpm-system exec ds/gadgetpm -- gadgetpm dump",
		"kubectl get gadgetpackages -A",
		"rbac.packageResources is on",
	} {
		if !strings.Contains(n, want) {
			t.Errorf("NOTES lack %q:\n%s", want, n)
		}
	}
	n = notes(t, map[string]any{"rbac": map[string]any{"packageResources": false}, "operator": map[string]any{"leaderElection": map[string]any{"enabled": false}}})
	if strings.Contains(n, "rbac.packageResources is on") || !strings.Contains(n, "Leader election is off") {
		t.Errorf("NOTES with narrow RBAC and no leader election:\n%s", n)
	}
}
