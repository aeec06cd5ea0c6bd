package chartcheck_test

import "testing"

// rbac.packageServiceAccounts lets the cluster role issue tokens of any
// namespace's ServiceAccounts, for the hooks of packages that act as one;
// off (the default), the narrow install issues none but the hooks'
// account's.
func TestRenderPackageServiceAccountTokens(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		grants bool
	}{
		{"narrow, packageServiceAccounts on", map[string]any{"rbac": map[string]any{"packageResources": false, "packageServiceAccounts": true}}, true},
		{"narrow, default", map[string]any{"rbac": map[string]any{"packageResources": false}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := named(t, mustRender(t, "gadgetpm", tc.values).cr, "gadgetpm-cluster").Rules
			if got := allows(rules, "", "serviceaccounts/token", "create"); got != tc.grants {
				t.Errorf("the cluster role's ClusterRole grants create on serviceaccounts/token: %v, want %v (%+v)", got, tc.grants, rules)
			}
		})
	}
}
