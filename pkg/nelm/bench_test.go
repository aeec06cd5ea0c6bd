package nelm_test

import (
	"context"
	"testing"
	"time"

	helmaction "helm.sh/helm/v3/pkg/action"

	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// BenchmarkInstallUninstall installs and uninstalls a chart of 10
// ConfigMaps through pkg/nelm and through bare Helm SDK calls (fresh
// action.Configuration per operation, Secret storage, wait for readiness and
// deletion, same QPS and burst), alternating in each iteration so both see
// the same server at the same time. The bare-Helm side uses pkg/nelm's
// RESTClientGetter too, so both share the same kind of discovery cache. It reports each side's time per
// install+uninstall and their ratio (nelm/helm).
func BenchmarkInstallUninstall(b *testing.B) {
	ctx := context.Background()
	ch := chartOf("bench", "1.0.0", map[string]string{"cm.yaml": configMaps(10)})
	values := map[string]any{"value": "v"}
	const qps, burst = 20, 40

	ns := env.Namespace(b)
	s := newService(b, nelm.Options{QPS: qps, Burst: burst})
	pkg := newPackage(b, ns, "bench-nelm")

	helmNS := env.Namespace(b)
	g, err := nelm.NewRESTClientGetter(env.Config, helmNS, qps, burst)
	if err != nil {
		b.Fatal(err)
	}
	helmConfig := func() *helmaction.Configuration {
		cfg := new(helmaction.Configuration)
		if err := cfg.Init(g, helmNS, "secret", func(string, ...any) {}); err != nil {
			b.Fatal(err)
		}
		return cfg
	}

	var nelmTime, helmTime time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := s.Upgrade(ctx, pkg, ch, values); err != nil {
			b.Fatal(err)
		}
		if err := s.Delete(ctx, pkg); err != nil {
			b.Fatal(err)
		}
		nelmTime += time.Since(start)

		start = time.Now()
		inst := helmaction.NewInstall(helmConfig())
		inst.Namespace, inst.ReleaseName = helmNS, "bench-helm"
		inst.Wait, inst.Timeout = true, 5*time.Minute
		if _, err := inst.RunWithContext(ctx, ch, values); err != nil {
			b.Fatal(err)
		}
		un := helmaction.NewUninstall(helmConfig())
		un.Wait, un.Timeout = true, 5*time.Minute
		if _, err := un.Run("bench-helm"); err != nil {
			b.Fatal(err)
		}
		helmTime += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(nelmTime.Milliseconds())/n, "nelm-ms/op")
	b.ReportMetric(float64(helmTime.Milliseconds())/n, "helm-ms/op")
	b.ReportMetric(float64(nelmTime)/float64(helmTime), "nelm/helm")
}
