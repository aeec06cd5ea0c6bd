package objectpatch

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// protectConfigMaps makes the API server refuse to delete ConfigMaps
// labelled protected=true in namespace ns, through a ValidatingAdmissionPolicy,
// and waits until it does.
func protectConfigMaps(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	name := "protect-" + ns
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Delete},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
					},
				}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: `!has(oldObject.metadata.labels) || !('protected' in oldObject.metadata.labels) || oldObject.metadata.labels['protected'] != 'true'`,
				Message:    "protected ConfigMaps may not be deleted",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			},
		},
	}
	for _, o := range []client.Object{policy, binding} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	// The policy takes effect once the API server has loaded it: probe with
	// dry-run deletes of a protected ConfigMap.
	probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe", Labels: map[string]string{"protected": "true"}}}
	if err := env.Client.Create(ctx, probe); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 30*time.Second, "the delete-protection policy to take effect", func() error {
		err := env.Client.Delete(ctx, probe, client.DryRunAll)
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return nil
		}
		return fmt.Errorf("last dry-run delete: %v", err)
	})
}

// TestApplyFailureModes covers the failure of each operation that
// TestApplyOperations shows succeeding only: CreateOrUpdate (on either
// path), CreateIfNotExists, DeleteInBackground and DeleteNonCascading. Each
// failure names the operation's index, kind, namespace/name and the API
// server's own message, and the operations around it still apply.
func TestApplyFailureModes(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	p := newPatcher(t)
	protectConfigMaps(t, ns)
	for _, name := range []string{"kept", "guarded-bg", "guarded-orphan"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"k": "1"}}
		if name != "kept" {
			cm.Labels = map[string]string{"protected": "true"}
		}
		if err := env.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name string
		op   string
		// want are substrings of the failure: the operation, then the API
		// server's message.
		want []string
		// check asserts the cluster after the failed operation.
		check func(t *testing.T)
	}{
		{"CreateOrUpdate of an invalid new object",
			`{"operation":"CreateOrUpdate","object":` + cmObject(ns, "Bad_Name", `{"k":"1"}`) + `}`,
			[]string{"operation 2 (CreateOrUpdate v1/ConfigMap " + ns + "/Bad_Name)", `ConfigMap "Bad_Name" is invalid`, "metadata.name: Invalid value"},
			nil},
		{"CreateOrUpdate into an invalid existing object",
			`{"operation":"CreateOrUpdate","object":` + cmObject(ns, "kept", `{"bad key":"2"}`) + `}`,
			[]string{"operation 2 (CreateOrUpdate v1/ConfigMap " + ns + "/kept)", `ConfigMap "kept" is invalid`, "data[bad key]"},
			func(t *testing.T) {
				if d := getCM(t, ns, "kept").Data; d["k"] != "1" || len(d) != 1 {
					t.Errorf("kept changed to %v", d)
				}
			}},
		{"CreateIfNotExists of an invalid object",
			`{"operation":"CreateIfNotExists","object":` + cmObject(ns, "Bad_Name", `{"k":"1"}`) + `}`,
			[]string{"operation 2 (CreateIfNotExists v1/ConfigMap " + ns + "/Bad_Name)", `ConfigMap "Bad_Name" is invalid`},
			nil},
		{"DeleteInBackground refused by the API server",
			fmt.Sprintf(`{"operation":"DeleteInBackground","kind":"ConfigMap","namespace":%q,"name":"guarded-bg"}`, ns),
			[]string{"operation 2 (DeleteInBackground ConfigMap " + ns + "/guarded-bg)", `configmaps "guarded-bg" is forbidden`, "protected ConfigMaps may not be deleted"},
			func(t *testing.T) {
				if cm := getCM(t, ns, "guarded-bg"); cm.DeletionTimestamp != nil {
					t.Error("guarded-bg is being deleted")
				}
			}},
		{"DeleteNonCascading refused by the API server",
			fmt.Sprintf(`{"operation":"DeleteNonCascading","kind":"ConfigMap","namespace":%q,"name":"guarded-orphan"}`, ns),
			[]string{"operation 2 (DeleteNonCascading ConfigMap " + ns + "/guarded-orphan)", `configmaps "guarded-orphan" is forbidden`, "protected ConfigMaps may not be deleted"},
			func(t *testing.T) {
				if cm := getCM(t, ns, "guarded-orphan"); cm.DeletionTimestamp != nil {
					t.Error("guarded-orphan is being deleted")
				}
			}},
		{"DeleteInBackground of an unknown kind",
			fmt.Sprintf(`{"operation":"DeleteInBackground","apiVersion":"v1","kind":"Gizmo","namespace":%q,"name":"g"}`, ns),
			[]string{"operation 2 (DeleteInBackground v1/Gizmo " + ns + "/g)", `kind "Gizmo"`},
			nil},
		{"DeleteNonCascading of an unknown kind",
			fmt.Sprintf(`{"operation":"DeleteNonCascading","apiVersion":"v1","kind":"Gizmo","namespace":%q,"name":"g"}`, ns),
			[]string{"operation 2 (DeleteNonCascading v1/Gizmo " + ns + "/g)", `kind "Gizmo"`},
			nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The failing operation sits between two that must still apply.
			before, after := fmt.Sprintf("before-%d", i), fmt.Sprintf("after-%d", i)
			in := `{"operation":"Create","object":` + cmObject(ns, before, `{}`) + "}\n" + tt.op + "\n" +
				`{"operation":"Create","object":` + cmObject(ns, after, `{}`) + "}"
			err := p.Apply(ctx, []byte(in))
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "operation 1 ") || strings.Contains(err.Error(), "operation 3 ") {
				t.Errorf("error %q blames an operation that succeeded", err)
			}
			getCM(t, ns, before)
			getCM(t, ns, after)
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}
