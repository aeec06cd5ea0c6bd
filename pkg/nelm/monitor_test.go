package nelm_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	helmaction "helm.sh/helm/v3/pkg/action"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// nextDrift waits for the next drift report or fails.
func nextDrift(t *testing.T, s *nelm.Service) nelm.Drift {
	t.Helper()
	select {
	case d := <-s.Drifts():
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("no drift reported within 30s")
		return nelm.Drift{}
	}
}

func deleteConfigMap(t *testing.T, ns, name string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := env.Client.Delete(context.Background(), cm); err != nil {
		t.Fatalf("delete ConfigMap %s/%s by hand: %v", ns, name, err)
	}
}

func TestMonitorReportsDeletedObjectAndRunRestoresIt(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{MonitorInterval: 100 * time.Millisecond})
	pkg := newPackage(t, ns, "watched")
	ctx := ctxFor(t)
	ch := chartOf("watched", "1.0.0", map[string]string{"cm.yaml": configMaps(3)})
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	if !s.Monitoring(pkg) {
		t.Fatal("no drift monitor after install")
	}

	deleteConfigMap(t, ns, "watched-1")
	d := nextDrift(t, s)
	want := nelm.Object{Kind: "ConfigMap", Namespace: ns, Name: "watched-1"}
	if d.Package.Key() != pkg.Key() || d.Revision != 1 || len(d.Missing) != 1 || d.Missing[0] != want {
		t.Fatalf("drift = %+v, want %v missing from %s revision 1", d, want, pkg)
	}
	if msg := waitForEvent(t, pkg, nelm.ReasonDrift); !strings.Contains(msg, want.String()) {
		t.Fatalf("drift Event %q does not name %s", msg, want)
	}

	// The run the consumer enqueues: same chart and values, but an object
	// is missing, so it is not skipped.
	res, err := s.Upgrade(ctx, pkg, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != nelm.ActionUpgrade || res.Revision != 2 {
		t.Fatalf("run after drift = %+v, want upgrade to revision 2", res)
	}
	if _, ok := getConfigMap(t, ns, "watched-1"); !ok {
		t.Fatal("ConfigMap watched-1 not restored")
	}
}

func TestMonitorPauseIsCounted(t *testing.T) {
	ns := env.Namespace(t)
	logs := &testlog.Lines{}
	s := newService(t, nelm.Options{MonitorInterval: 50 * time.Millisecond, MonitorJitter: -1, Logger: logs.Logger(1)})
	pkg := newPackage(t, ns, "paused")
	ch := chartOf("paused", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	if _, err := s.Upgrade(ctxFor(t), pkg, ch, nil); err != nil {
		t.Fatal(err)
	}

	s.Pause(pkg) // a hook
	s.Pause(pkg) // an upgrade at the same time
	deleteConfigMap(t, ns, "paused-0")
	s.Resume(pkg) // the hook is done; the upgrade still runs
	// Two checks that found the package still paused once: the second began
	// after the deletion and the first Resume, so it would have reported the
	// missing object had the pause not been counted.
	skipped := `"package"="` + pkg.Key() + `" "pauses"=1`
	eventually.NoError(t, 30*time.Second, "the monitor to check twice while paused once", func() error {
		if logs.Count("drift check skipped: paused", skipped) < 2 {
			return fmt.Errorf("log:\n%s", strings.Join(logs.Get(), "\n"))
		}
		return nil
	})
	select {
	case d := <-s.Drifts():
		t.Fatalf("drift reported while paused: %+v", d)
	default:
	}
	s.Resume(pkg)
	if d := nextDrift(t, s); d.Missing[0].Name != "paused-0" {
		t.Fatalf("drift after resume = %+v, want paused-0", d)
	}
}

func TestStopMonitors(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{MonitorInterval: 50 * time.Millisecond})
	pkg := newPackage(t, ns, "stopped")
	ch := chartOf("stopped", "1.0.0", map[string]string{"cm.yaml": configMaps(1)})
	if _, err := s.Upgrade(ctxFor(t), pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	s.StopMonitors()
	s.StopMonitors() // safe twice
	if s.Monitoring(pkg) {
		t.Fatal("monitor runs after StopMonitors")
	}
	// Releases still work; no monitor starts again.
	if _, err := s.Upgrade(ctxFor(t), pkg, ch, map[string]any{"value": "x"}); err != nil {
		t.Fatal(err)
	}
	if s.Monitoring(pkg) {
		t.Fatal("monitor started after StopMonitors")
	}
}

func TestMonitorReportsReleaseUninstalledBehindItsBack(t *testing.T) {
	ns := env.Namespace(t)
	s := newService(t, nelm.Options{MonitorInterval: 100 * time.Millisecond})
	pkg := newPackage(t, ns, "vanished")
	ctx := ctxFor(t)
	ch := chartOf("vanished", "1.0.0", map[string]string{"cm.yaml": configMaps(2)})
	if _, err := s.Upgrade(ctx, pkg, ch, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := helmaction.NewUninstall(helmConfig(t, ns)).Run("vanished"); err != nil {
		t.Fatal(err)
	}
	d := nextDrift(t, s)
	if len(d.Missing) != 2 {
		t.Fatalf("drift = %+v, want both ConfigMaps missing", d)
	}
	res, err := s.Upgrade(ctx, pkg, ch, nil)
	if err != nil || res.Action != nelm.ActionInstall {
		t.Fatalf("run after drift = %+v, %v; want a fresh install", res, err)
	}
	if _, ok := getConfigMap(t, ns, "vanished-1"); !ok {
		t.Fatal("ConfigMap vanished-1 not restored")
	}
}
