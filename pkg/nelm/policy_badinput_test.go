package nelm_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// The CRD schema refuses remediation and drift settings that mean
// nothing, naming the field.
func TestRemediationAndDriftSettingsRefusedBySchema(t *testing.T) {
	ns := env.Namespace(t)
	tests := []struct {
		name  string
		spec  func(*v1alpha1.GadgetPackageSpec)
		words []string
	}{
		{"negative install retries", func(s *v1alpha1.GadgetPackageSpec) {
			s.Install = &v1alpha1.InstallSpec{Remediation: &v1alpha1.InstallRemediation{Retries: -1}}
		}, []string{"spec.install.remediation.retries", "greater than or equal to 0"}},
		{"negative upgrade retries", func(s *v1alpha1.GadgetPackageSpec) {
			s.Upgrade = &v1alpha1.UpgradeSpec{Remediation: &v1alpha1.UpgradeRemediation{Retries: -2}}
		}, []string{"spec.upgrade.remediation.retries", "greater than or equal to 0"}},
		{"unknown strategy", func(s *v1alpha1.GadgetPackageSpec) {
			s.Upgrade = &v1alpha1.UpgradeSpec{Remediation: &v1alpha1.UpgradeRemediation{Strategy: "reinstall"}}
		}, []string{"spec.upgrade.remediation.strategy", `"rollback", "uninstall"`}},
		{"unknown mode", func(s *v1alpha1.GadgetPackageSpec) {
			s.DriftDetection = &v1alpha1.DriftDetection{Mode: "fix"}
		}, []string{"spec.driftDetection.mode", `"disabled", "warn", "enabled"`}},
		{"pointer without a leading slash", func(s *v1alpha1.GadgetPackageSpec) {
			s.DriftDetection = &v1alpha1.DriftDetection{Ignore: []v1alpha1.DriftIgnoreRule{{Paths: []string{"spec/replicas"}}}}
		}, []string{"spec.driftDetection.ignore[0].paths[0]", "should match"}},
		{"bad escape in a pointer", func(s *v1alpha1.GadgetPackageSpec) {
			s.DriftDetection = &v1alpha1.DriftDetection{Ignore: []v1alpha1.DriftIgnoreRule{{Paths: []string{"/data/a~2b"}}}}
		}, []string{"spec.driftDetection.ignore[0].paths[0]", "should match"}},
		{"rule without paths", func(s *v1alpha1.GadgetPackageSpec) {
			s.DriftDetection = &v1alpha1.DriftDetection{Ignore: []v1alpha1.DriftIgnoreRule{{Target: &v1alpha1.DriftIgnoreTarget{Kind: "ConfigMap"}}}}
		}, []string{"spec.driftDetection.ignore[0].paths"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad-" + string(rune('a'+i))},
				Spec: v1alpha1.GadgetPackageSpec{Repository: "test", Package: "bad"}}
			tc.spec(&gp.Spec)
			err := env.Client.Create(context.Background(), gp)
			if err == nil {
				t.Fatal("created; want the schema to refuse it")
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A Package made without the schema is refused by the service, naming the
// field, before anything changes.
func TestUpgradeRefusesBadPolicy(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{})
	ch := chartOf("policy", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	tests := []struct {
		name  string
		set   func(*nelm.Package)
		words string
	}{
		{"mode", func(p *nelm.Package) { p.DriftDetection = &v1alpha1.DriftDetection{Mode: "fix"} },
			`spec.driftDetection.mode is "fix"; want disabled, warn or enabled`},
		{"pointer", func(p *nelm.Package) {
			p.DriftDetection = &v1alpha1.DriftDetection{Ignore: []v1alpha1.DriftIgnoreRule{{Paths: []string{"/ok", "nope"}}}}
		}, `spec.driftDetection.ignore[0].paths[1]: JSON pointer "nope" must start with '/'`},
		{"strategy", func(p *nelm.Package) {
			p.UpgradeRemediation = &v1alpha1.UpgradeRemediation{Strategy: "reinstall"}
		}, `spec.upgrade.remediation.strategy is "reinstall"; want rollback or uninstall`},
		{"retries", func(p *nelm.Package) { p.InstallRemediation = &v1alpha1.InstallRemediation{Retries: -1} },
			`spec.install.remediation.retries is -1; want 0 or more`},
	}
	pkg := newPackage(t, ns, "policy")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pkg
			tc.set(&p)
			_, err := s.Upgrade(ctxFor(t), p, ch, nil)
			if !errors.Is(err, nelm.ErrInvalidPackage) || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("error = %v, want ErrInvalidPackage saying %q", err, tc.words)
			}
			waitForEventWith(t, pkg, nelm.ReasonFailed, tc.words)
		})
	}
	if h := history(t, ns, "policy"); len(h) != 0 {
		t.Fatalf("release made despite the bad settings: %d revisions", len(h))
	}
}
