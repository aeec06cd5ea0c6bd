package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	helmaction "helm.sh/helm/v3/pkg/action"
	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

const benchPackages = 50

// threeObjects is the bench packages' chart: a ConfigMap, a Secret and a
// ServiceAccount.
const threeObjects = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  ignoreFailed: {{ .Values.ignoreFailed | quote }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-secret
stringData:
  k: v
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}-sa
`

// BenchmarkFiftyPackages measures 50 packages (a 3-object chart, one
// onStartup and one beforeHelm hook each) from creating their
// GadgetPackages to all Running, with the operator as a real process,
// beside a bare loop of Helm SDK installs (wait for readiness, Secret
// storage, same QPS) of the same 50 charts in the same run. It reports
// both times, their ratio and the operator's RSS after convergence.
func BenchmarkFiftyPackages(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	var sources []packagetest.Source
	for i := range benchPackages {
		sources = append(sources, packagetest.Source{
			Name: fmt.Sprintf("bench%02d", i),
			Hooks: map[string]string{
				"10-startup.sh": "#!/bin/sh\n[ \"$1\" = --config ] && echo '{\"configVersion\":\"v1\",\"onStartup\":1}'\nexit 0\n",
				"20-before.sh":  "#!/bin/sh\n[ \"$1\" = --config ] && echo '{\"configVersion\":\"v1\",\"beforeHelm\":1}'\nexit 0\n",
			},
			Files: map[string]string{"templates/cm.yaml": threeObjects},
		})
	}
	repoDir := packagetest.Repo(b, dir, sources...)
	repoName := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: repoName},
		Spec: v1alpha1.PackageRepositorySpec{URL: "file://" + repoDir, Interval: metav1.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, pr); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Client.Delete(ctx, pr) })

	const qps, burst = 20, 40
	bin := buildBinary(b)
	metricsAddr := freePort(b)
	proc := startProcess(b, bin, "operator", "--kubeconfig", env.WriteKubeconfig(b), "--node-name", "bench",
		"--data-dir", b.TempDir(), "--debug-socket", "-", "--metrics-bind-address", metricsAddr, "--health-probe-bind-address", "0", "--stream-bind-address", "127.0.0.1:0",
		"--helm-qps", strconv.Itoa(qps), "--helm-burst", strconv.Itoa(burst))

	var charts []string
	for i := range benchPackages {
		charts = append(charts, filepath.Join(repoDir, fmt.Sprintf("bench%02d-1.0.0.tgz", i)))
	}

	var opTime, helmTime time.Duration
	var rssKB int
	var heapBytes float64
	for b.Loop() {
		ns := env.Namespace(b)
		start := time.Now()
		for i := range benchPackages {
			gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench%02d", i)},
				Spec: v1alpha1.GadgetPackageSpec{Repository: repoName, Package: fmt.Sprintf("bench%02d", i), Version: "*"}}
			if err := env.Client.Create(ctx, gp); err != nil {
				b.Fatal(err)
			}
		}
		eventually.NoError(b, 10*time.Minute, fmt.Sprintf("%d packages Running", benchPackages), func() error {
			var list v1alpha1.GadgetPackageList
			if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return err
			}
			n := 0
			for i := range list.Items {
				if running(&list.Items[i]) {
					n++
				}
			}
			if n != benchPackages {
				return fmt.Errorf("%d Running", n)
			}
			return nil
		})
		opTime += time.Since(start)
		rssKB = max(rssKB, vmRSS(b, proc.cmd.Process.Pid))
		heapBytes = max(heapBytes, scrape(b, metricsAddr, "go_memstats_heap_inuse_bytes"))

		helmNS := env.Namespace(b)
		g, err := nelm.NewRESTClientGetter(env.Config, helmNS, qps, burst)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for i, path := range charts {
			ch, err := helmloader.Load(path)
			if err != nil {
				b.Fatal(err)
			}
			cfg := new(helmaction.Configuration)
			if err := cfg.Init(g, helmNS, "secret", func(string, ...any) {}); err != nil {
				b.Fatal(err)
			}
			inst := helmaction.NewInstall(cfg)
			inst.Namespace, inst.ReleaseName = helmNS, fmt.Sprintf("bench%02d", i)
			inst.Wait, inst.Timeout = true, 5*time.Minute
			if _, err := inst.RunWithContext(ctx, ch, map[string]any{}); err != nil {
				b.Fatal(err)
			}
		}
		helmTime += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(opTime.Seconds()/n, "operator-s/op")
	b.ReportMetric(helmTime.Seconds()/n, "helm-s/op")
	b.ReportMetric(float64(opTime)/float64(helmTime), "operator/helm")
	b.ReportMetric(float64(rssKB)/1024, "operator-rss-MiB")
	b.ReportMetric(heapBytes/(1<<20), "operator-heap-inuse-MiB")
}

// scrape reads one unlabelled metric from the operator's metrics endpoint.
func scrape(tb testing.TB, addr, name string) float64 {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				tb.Fatal(err)
			}
			return v
		}
	}
	tb.Fatalf("no %s on the metrics endpoint", name)
	return 0
}

// vmRSS reads a process's resident set size in KiB.
func vmRSS(tb testing.TB, pid int) int {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return kb
		}
	}
	tb.Fatal("no VmRSS in /proc status")
	return 0
}
