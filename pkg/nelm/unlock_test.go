package nelm_test

import (
	"fmt"
	"testing"

	helmrelease "helm.sh/helm/v3/pkg/release"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// TestUnlockNamesThePendingStateOfEveryRevision leaves releases as a killed
// operator would (revisions written pending through Helm's own Secret
// storage), then lets a freshly started Service upgrade them: each pending
// revision is marked failed and gets its own HelmUnlocked Event naming the
// state it was found in.
func TestUnlockNamesThePendingStateOfEveryRevision(t *testing.T) {
	ns := env.Namespace(t)
	ctx := ctxFor(t)
	cfg := helmConfig(t, ns)
	tests := []struct {
		name string
		// pending are the states of revisions 2, 3, ... stored over a
		// deployed revision 1; with noDeployed, of revisions 1, 2, ...
		pending    []helmrelease.Status
		noDeployed bool
	}{
		{name: "install", pending: []helmrelease.Status{helmrelease.StatusPendingInstall}, noDeployed: true},
		{name: "upgrade", pending: []helmrelease.Status{helmrelease.StatusPendingUpgrade}},
		{name: "rollback", pending: []helmrelease.Status{helmrelease.StatusPendingRollback}},
		{name: "two", pending: []helmrelease.Status{helmrelease.StatusPendingUpgrade, helmrelease.StatusPendingRollback}},
	}

	// The operator that was killed: it deployed what it could, then its
	// later writes stayed pending.
	before := newService(t, nelm.Options{})
	pkgs := map[string]nelm.Package{}
	for _, tt := range tests {
		pkg := newPackage(t, ns, tt.name)
		pkgs[tt.name] = pkg
		ch := chartOf(tt.name, "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
		version := 1
		if !tt.noDeployed {
			if _, err := before.Upgrade(ctx, pkg, ch, nil); err != nil {
				t.Fatal(err)
			}
			version = 2
		}
		for i, st := range tt.pending {
			rel := &helmrelease.Release{
				Name: tt.name, Namespace: ns, Version: version + i, Chart: ch, Config: map[string]any{},
				Info:   &helmrelease.Info{Status: st},
				Labels: map[string]string{nelm.LabelManagedBy: nelm.ManagedByValue},
			}
			if err := cfg.Releases.Create(rel); err != nil {
				t.Fatalf("store revision %d %s of %s: %v", rel.Version, st, tt.name, err)
			}
		}
	}
	before.StopMonitors()

	after := newService(t, nelm.Options{})
	for _, tt := range tests {
		pkg := pkgs[tt.name]
		ch := chartOf(tt.name, "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
		res, err := after.Upgrade(ctx, pkg, ch, map[string]any{"value": "after-restart"})
		if err != nil {
			t.Fatalf("%s: upgrade after the restart: %v", tt.name, err)
		}
		if !res.Unlocked {
			t.Errorf("%s: result = %+v, want Unlocked", tt.name, res)
		}
		h := history(t, ns, tt.name)
		for _, r := range h {
			if r.Info.Status.IsPending() {
				t.Errorf("%s: revision %d still %s", tt.name, r.Version, r.Info.Status)
			}
		}
		if last := h[len(h)-1]; last.Info.Status != helmrelease.StatusDeployed {
			t.Errorf("%s: last revision %d is %s, want deployed", tt.name, last.Version, last.Info.Status)
		}
		first := 2
		if tt.noDeployed {
			first = 1
		}
		for i, st := range tt.pending {
			rev := first + i
			waitForEventWith(t, pkg, nelm.ReasonUnlocked,
				fmt.Sprintf("revision %d was found %s", rev, st), "interrupted operation", "marked it failed")
		}
	}
}
