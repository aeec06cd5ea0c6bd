package chartcheck_test

import (
	"path/filepath"
	"testing"

	helmchartutil "helm.sh/helm/v3/pkg/chartutil"
	helmlint "helm.sh/helm/v3/pkg/lint"
	helmlintsupport "helm.sh/helm/v3/pkg/lint/support"
)

// TestHelmLint runs `helm lint`'s checks: what a user runs before
// installing must not warn.
func TestHelmLint(t *testing.T) {
	kv, err := helmchartutil.ParseKubeVersion("v1.36.3")
	if err != nil {
		t.Fatal(err)
	}
	l := helmlint.AllWithKubeVersion(filepath.Join(env.RepoRoot, "charts", "gadgetpm"), nil, releaseNS, kv)
	for _, m := range l.Messages {
		if m.Severity >= helmlintsupport.WarningSev {
			t.Errorf("helm lint: %s", m)
		} else {
			t.Logf("helm lint: %s", m)
		}
	}
}
