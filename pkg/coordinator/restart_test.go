package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/nelm/nelmtest"
)

// restartRig runs the gadgetpm binary's cluster role for one namespace,
// over one data directory that outlives each process, as a Deployment's
// volume does.
type restartRig struct {
	bin, kubeconfig, dataDir, ns string
}

func newRestartRig(t *testing.T, bin, ns string) *restartRig {
	t.Helper()
	return &restartRig{bin: bin, kubeconfig: env.WriteKubeconfig(t), dataDir: t.TempDir(), ns: ns}
}

// start starts an operator process.
func (r *restartRig) start(t *testing.T) *process {
	t.Helper()
	return startProcess(t, r.bin, "operator", "--role", "cluster", "--kubeconfig", r.kubeconfig, "--node-name", "test-node",
		"--data-dir", r.dataDir, "--debug-socket", "-", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--stream-bind-address", "127.0.0.1:0", "--namespaces", r.ns, "--leader-election-namespace", r.ns,
		"--leader-elect=false", "--hook-sandbox", "off")
}

// kill SIGKILLs p and waits for it.
func kill(t *testing.T, p *process) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// statusLog records every status of the namespace's GadgetPackages a
// watch delivers, from its start until stop.
type statusLog struct {
	mu   sync.Mutex
	seen map[string][]v1alpha1.GadgetPackageStatus // by name
	stop func()
}

func watchStatus(t *testing.T, ns string) *statusLog {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	l := &statusLog{seen: map[string][]v1alpha1.GadgetPackageStatus{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A watch the API server ends (its cache behind, a timeout) is
		// started again: it begins with every object as it is now.
		for ctx.Err() == nil {
			w, err := wc.Watch(ctx, &v1alpha1.GadgetPackageList{}, client.InNamespace(ns))
			if err != nil {
				// an API server hiccup: try again shortly, or end with
				// the log
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			for ev := range w.ResultChan() {
				gp, ok := ev.Object.(*v1alpha1.GadgetPackage)
				if ev.Type == watch.Error {
					break
				}
				if ok && ev.Type != watch.Deleted {
					l.mu.Lock()
					l.seen[gp.Name] = append(l.seen[gp.Name], *gp.Status.DeepCopy())
					l.mu.Unlock()
				}
			}
			w.Stop()
		}
	}()
	var once sync.Once
	l.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(l.stop)
	return l
}

func (l *statusLog) statuses(name string) []v1alpha1.GadgetPackageStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]v1alpha1.GadgetPackageStatus(nil), l.seen[name]...)
}

// countLines counts the lines of path that start with prefix.
func countLines(t *testing.T, path, prefix string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// stampHook appends "<binding> <unix nanoseconds>" to journal on every
// run of the bindings in config, then runs extra.
func stampHook(journal, config, extra string) string {
	return fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then
  cat <<'EOF'
%s
EOF
  exit 0
fi
b=$(sed -n 's/.*"binding": *"\([^"]*\)".*/\1/p' "$BINDING_CONTEXT_PATH" | head -n 1)
echo "$b $(date +%%s%%N)" >> %q
%s
`, config, journal, extra)
}

// settled: Running, and no task of its plan is left.
func settled(gp *v1alpha1.GadgetPackage) bool {
	c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReconciling)
	return running(gp) && gp.Status.LastAttempt == nil && c != nil && c.Status == metav1.ConditionFalse
}

func getPackage(t *testing.T, ns, name string) *v1alpha1.GadgetPackage {
	t.Helper()
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp); err != nil {
		t.Fatal(err)
	}
	return &gp
}

const cmTemplate = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  v: {{ .Chart.Version | quote }}\n"

// TestRestart covers what survives a SIGKILL of the operator: a package
// deleted while it was down is torn down in full, a spec changed while it
// was down is upgraded from what was installed, Running packages keep
// their status across the restart, failure counts and Stalled survive,
// and a task cut short by the crash is counted and backed off.
func TestRestart(t *testing.T) {
	bin := buildBinary(t)
	ctx := context.Background()

	t.Run("deleted while down is removed in full", func(t *testing.T) {
		ns := env.Namespace(t)
		journal := filepath.Join(t.TempDir(), "journal")
		repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "gone",
			Files: map[string]string{"templates/cm.yaml": cmTemplate},
			Hooks: map[string]string{"10-rec.sh": stampHook(journal, lifecycleConfig, "")}})
		createRepo(t, "gone-"+ns, repoDir)
		createPackage(t, ns, "gone", "gone-"+ns)
		rig := newRestartRig(t, bin, ns)
		first := rig.start(t)
		waitFor(t, ns, "gone", "Running", running)
		if !nelmtest.ConfigMapExists(t, env.Client, ns, "gone-cm") {
			t.Fatal("the release's ConfigMap is missing while Running")
		}
		kill(t, first)

		if err := env.Client.Delete(ctx, getPackage(t, ns, "gone")); err != nil {
			t.Fatal(err)
		}
		if gp := getPackage(t, ns, "gone"); gp.DeletionTimestamp.IsZero() {
			t.Fatal("the GadgetPackage is not held by its finalizer while no operator runs")
		}
		rig.start(t)
		waitGone(t, ns, "gone")
		if h := nelmtest.History(t, env.Config, ns, "gone"); len(h) != 0 {
			t.Errorf("the Helm release outlived its GadgetPackage: %d revision(s)", len(h))
		}
		if nelmtest.ConfigMapExists(t, env.Client, ns, "gone-cm") {
			t.Error("the release's ConfigMap outlived its GadgetPackage")
		}
		if n := countLines(t, journal, "afterDeleteHelm "); n != 1 {
			t.Errorf("afterDeleteHelm ran %d time(s), want 1, before the finalizer went", n)
		}
	})

	t.Run("spec changed while down is upgraded", func(t *testing.T) {
		ns := env.Namespace(t)
		journal := filepath.Join(t.TempDir(), "journal")
		src := func(v string) packagetest.Source {
			return packagetest.Source{Name: "up", Version: v, Files: map[string]string{"templates/cm.yaml": cmTemplate},
				Hooks: map[string]string{"10-rec.sh": stampHook(journal, lifecycleConfig, "")}}
		}
		repoDir := packagetest.Repo(t, t.TempDir(), src("1.0.0"), src("2.0.0"))
		createRepo(t, "up-"+ns, repoDir)
		gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: "up", Namespace: ns},
			Spec: v1alpha1.GadgetPackageSpec{Repository: "up-" + ns, Package: "up", Version: "1.0.0"}}
		if err := env.Client.Create(ctx, gp); err != nil {
			t.Fatal(err)
		}
		rig := newRestartRig(t, bin, ns)
		first := rig.start(t)
		gp = waitFor(t, ns, "up", "Running 1.0.0", func(gp *v1alpha1.GadgetPackage) bool { return running(gp) && gp.Status.Version == "1.0.0" })
		if gp.Status.HelmRevision != 1 {
			t.Fatalf("revision %d after the install, want 1", gp.Status.HelmRevision)
		}
		kill(t, first)

		patch := client.MergeFrom(gp.DeepCopy())
		gp.Spec.Version = "2.0.0"
		if err := env.Client.Patch(ctx, gp, patch); err != nil {
			t.Fatal(err)
		}
		seen := watchStatus(t, ns)
		rig.start(t)
		gp = waitFor(t, ns, "up", "Running 2.0.0 with its plan done", func(gp *v1alpha1.GadgetPackage) bool { return settled(gp) && gp.Status.Version == "2.0.0" })
		seen.stop()
		if gp.Status.HelmRevision != 2 {
			t.Errorf("revision %d after the upgrade, want 2 (an upgrade of revision 1)", gp.Status.HelmRevision)
		}
		if h := nelmtest.History(t, env.Config, ns, "up"); len(h) != 2 || h[1].Chart.Metadata.Version != "2.0.0" {
			t.Errorf("release history has %d revision(s); want 1.0.0 then 2.0.0", len(h))
		}
		if n := countLines(t, journal, "afterDeleteHelm "); n != 0 {
			t.Errorf("afterDeleteHelm ran %d time(s): the package was reinstalled, not upgraded", n)
		}
		for _, s := range seen.statuses("up") {
			if s.Phase != v1alpha1.PhaseRunning || s.HelmRevision == 0 || s.Version == "" {
				t.Errorf("while upgrading after the restart status went back to phase %q, version %q, revision %d", s.Phase, s.Version, s.HelmRevision)
			}
		}
	})

	t.Run("Running packages keep their status", func(t *testing.T) {
		ns := env.Namespace(t)
		journal := filepath.Join(t.TempDir(), "journal")
		names := []string{"p1", "p2", "p3"}
		var sources []packagetest.Source
		for _, n := range names {
			sources = append(sources, packagetest.Source{Name: n, Files: map[string]string{"templates/cm.yaml": cmTemplate},
				Hooks: map[string]string{"10-rec.sh": stampHook(journal, `{"configVersion":"v1","onStartup":10}`, "")}})
		}
		createRepo(t, "keep-"+ns, packagetest.Repo(t, t.TempDir(), sources...))
		for _, n := range names {
			createPackage(t, ns, n, "keep-"+ns)
		}
		rig := newRestartRig(t, bin, ns)
		first := rig.start(t)
		before := map[string]*v1alpha1.GadgetPackage{}
		for _, n := range names {
			before[n] = waitFor(t, ns, n, "Running", func(gp *v1alpha1.GadgetPackage) bool {
				return running(gp) && len(gp.Status.Hooks) == 1 && gp.Status.LastAttempt == nil
			})
		}
		eventually.True(t, 30*time.Second, "onStartup to run once per package", func() bool { return countLines(t, journal, "onStartup ") == len(names) })
		kill(t, first)

		seen := watchStatus(t, ns)
		rig.start(t)
		// onStartup runs again after a restart, as the protocol says.
		eventually.NoError(t, 90*time.Second, "onStartup to run again per package", func() error {
			if n := countLines(t, journal, "onStartup "); n != 2*len(names) {
				var attempts []string
				for _, n := range names {
					if a := getPackage(t, ns, n).Status.LastAttempt; a != nil {
						attempts = append(attempts, a.Task)
					}
				}
				return fmt.Errorf("%d runs; tasks in flight: %v", n, attempts)
			}
			return nil
		})
		for _, n := range names {
			waitFor(t, ns, n, "Running with its plan done", settled)
		}
		seen.stop()
		for _, n := range names {
			b := before[n].Status
			statuses := seen.statuses(n)
			if len(statuses) == 0 {
				t.Errorf("%s: the watch saw no status write across the restart", n)
			}
			for _, s := range statuses {
				ready := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady)
				if s.Phase != v1alpha1.PhaseRunning || !s.Enabled || ready == nil || ready.Status != metav1.ConditionTrue ||
					s.Version != b.Version || s.Digest != b.Digest || s.HelmRevision != b.HelmRevision || len(s.Hooks) != len(b.Hooks) || s.Catalog == nil {
					t.Errorf("%s: status flapped across the restart: phase %q enabled %v ready %v version %q digest %q revision %d hooks %d catalog %v; before: phase %q version %q revision %d hooks %d",
						n, s.Phase, s.Enabled, ready, s.Version, s.Digest, s.HelmRevision, len(s.Hooks), s.Catalog != nil, b.Phase, b.Version, b.HelmRevision, len(b.Hooks))
					break
				}
			}
		}
	})

	t.Run("failures and Stalled survive", func(t *testing.T) {
		ns := env.Namespace(t)
		dir := t.TempDir()
		journal, failFile := filepath.Join(dir, "journal"), filepath.Join(dir, "fail")
		if err := os.WriteFile(failFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		repoDir := packagetest.Repo(t, t.TempDir(),
			packagetest.Source{Name: "bad", Files: map[string]string{"templates/cm.yaml": cmTemplate},
				Hooks: map[string]string{"10-rec.sh": stampHook(journal, `{"configVersion":"v1","beforeHelm":10}`, fmt.Sprintf("if [ -e %q ]; then echo broken >&2; exit 1; fi", failFile))}},
			packagetest.Source{Name: "good", Files: map[string]string{"templates/cm.yaml": cmTemplate}})
		createRepo(t, "fail-"+ns, repoDir)
		createPackage(t, ns, "bad", "fail-"+ns)
		rig := newRestartRig(t, bin, ns)
		first := rig.start(t)
		gp := waitFor(t, ns, "bad", "Stalled", isStalled)
		// The binary's defaults: 5 attempts, all of them in a hook.
		if s := gp.Status; s.Failures != 5 || s.HookFailures != 5 || s.InstallFailures != 0 || s.UpgradeFailures != 0 {
			t.Errorf("after 5 failed attempts: failures %d, hook %d, install %d, upgrade %d; want 5, 5, 0, 0", s.Failures, s.HookFailures, s.InstallFailures, s.UpgradeFailures)
		}
		stalled := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
		runs := countLines(t, journal, "beforeHelm ")
		kill(t, first)

		rig.start(t)
		// Once a package created after the start runs, the new operator
		// has acted on every package it found.
		createPackage(t, ns, "good", "fail-"+ns)
		waitFor(t, ns, "good", "Running", running)
		gp = getPackage(t, ns, "bad")
		after := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
		if !isStalled(gp) || after.Message != stalled.Message || !after.LastTransitionTime.Equal(&stalled.LastTransitionTime) {
			t.Errorf("Stalled after the restart: %+v; want it kept as %+v", after, stalled)
		}
		if gp.Status.Failures != 5 || gp.Status.HookFailures != 5 {
			t.Errorf("after the restart: failures %d, hook %d; want 5 and 5 kept", gp.Status.Failures, gp.Status.HookFailures)
		}
		if n := countLines(t, journal, "beforeHelm "); n != runs {
			t.Errorf("a Stalled package was tried again after the restart: %d hook runs, want %d", n, runs)
		}

		// The cause fixed and the spec changed: counts reset, and it runs.
		if err := os.Remove(failFile); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(gp.DeepCopy())
		gp.Spec.Version = ">=1.0.0"
		if err := env.Client.Patch(ctx, gp, patch); err != nil {
			t.Fatal(err)
		}
		gp = waitFor(t, ns, "bad", "Running after the spec change", running)
		if s := gp.Status; s.Failures != 0 || s.HookFailures != 0 || isStalled(gp) {
			t.Errorf("after the spec change and a success: failures %d, hook %d, stalled %v; want 0, 0, false", s.Failures, s.HookFailures, isStalled(gp))
		}
	})

	t.Run("task cut short by a crash is counted and backed off", func(t *testing.T) {
		ns := env.Namespace(t)
		dir := t.TempDir()
		journal := filepath.Join(dir, "journal")
		// onStartup hangs: the operator is killed in it every time, as if
		// the package crashed it.
		repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "crash", Files: map[string]string{"templates/cm.yaml": cmTemplate},
			Hooks: map[string]string{"10-hang.sh": stampHook(journal, `{"configVersion":"v1","onStartup":10}`, "sleep 600")}})
		createRepo(t, "crash-"+ns, repoDir)
		createPackage(t, ns, "crash", "crash-"+ns)
		rig := newRestartRig(t, bin, ns)
		const limit = 5 // the binary's default attempt limit
		for i := 1; i <= limit; i++ {
			started := time.Now()
			p := rig.start(t)
			eventually.True(t, 90*time.Second, fmt.Sprintf("onStartup run %d", i), func() bool { return countLines(t, journal, "onStartup ") == i })
			gp := getPackage(t, ns, "crash")
			if gp.Status.LastAttempt == nil || gp.Status.LastAttempt.Task != "startup "+ns+".crash" {
				b, _ := os.ReadFile(journal)
				t.Fatalf("run %d: status.lastAttempt = %+v while the startup task runs; journal:\n%s", i, gp.Status.LastAttempt, b)
			}
			if want := int64(i - 1); gp.Status.Failures != want || gp.Status.HookFailures != want {
				t.Errorf("run %d: failures %d, hook %d; want %d: each crashed attempt counts once", i, gp.Status.Failures, gp.Status.HookFailures, want)
			}
			if i > 1 {
				// Retried after the backoff the log names, not at once.
				out := p.out.String()
				at := strings.Index(out, `"retryAt":"`)
				if at < 0 {
					t.Fatalf("run %d: no backoff in the log:\n%s", i, out)
				}
				retryAt, err := time.Parse(time.RFC3339Nano, strings.SplitN(out[at+len(`"retryAt":"`):], `"`, 2)[0])
				if err != nil {
					t.Fatal(err)
				}
				ran := lastStamp(t, journal)
				if ran.Before(retryAt) || retryAt.Sub(started) < time.Second {
					t.Errorf("run %d: onStartup ran at %v, before the backoff ended at %v (process started %v)", i, ran, retryAt, started)
				}
			}
			kill(t, p)
		}
		// At the limit it is Stalled, with no new attempt.
		p := rig.start(t)
		gp := waitFor(t, ns, "crash", "Stalled", isStalled)
		c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
		if c.Reason != v1alpha1.ReasonCrashedInTask || !strings.Contains(c.Message, "startup "+ns+".crash") || !strings.Contains(c.Message, v1alpha1.RetryAnnotation) {
			t.Errorf("Stalled = %+v; want reason %s naming the task and the way out", c, v1alpha1.ReasonCrashedInTask)
		}
		if gp.Status.Failures != limit || gp.Status.LastAttempt != nil {
			t.Errorf("failures %d, lastAttempt %+v; want %d and none", gp.Status.Failures, gp.Status.LastAttempt, limit)
		}
		env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Kind: "GadgetPackage", Name: "crash", Type: corev1.EventTypeWarning,
			Reason: v1alpha1.ReasonCrashedInTask, Parts: []string{"startup " + ns + ".crash"}})
		if !strings.Contains(p.out.String(), "package Stalled: its task was cut short by the operator's stop too often") {
			t.Errorf("the operator's log does not say why the package is Stalled:\n%s", p.out.String())
		}
		if n := countLines(t, journal, "onStartup "); n != limit {
			t.Errorf("onStartup ran %d times, want %d: the Stalled package was tried again", n, limit)
		}
		kill(t, p)
	})
}

// lastStamp is the time of the journal's last line.
func lastStamp(t *testing.T, journal string) time.Time {
	t.Helper()
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	ns, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(0, ns)
}

// A task the operator cancels at a graceful stop is not a crash: its
// status.lastAttempt is cleared, and the next start counts no failure and
// plans the package at once.
func TestGracefulStopIsNotCountedAsCrash(t *testing.T) {
	ns := env.Namespace(t)
	journal := filepath.Join(t.TempDir(), "journal")
	repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "slow", Files: map[string]string{"templates/cm.yaml": cmTemplate},
		Hooks: map[string]string{"10-hang.sh": stampHook(journal, `{"configVersion":"v1","onStartup":10}`, "sleep 600")}})
	createRepo(t, "slow-"+ns, repoDir)
	createPackage(t, ns, "slow", "slow-"+ns)
	_, _, stop := start(t)
	eventually.True(t, 60*time.Second, "onStartup to start", func() bool { return countLines(t, journal, "onStartup ") == 1 })
	if a := getPackage(t, ns, "slow").Status.LastAttempt; a == nil || a.Task != "startup "+ns+".slow" {
		t.Fatalf("status.lastAttempt = %+v while the startup task runs", a)
	}
	stop() // the hook outlives the stop grace and is cancelled
	gp := getPackage(t, ns, "slow")
	if gp.Status.LastAttempt != nil || gp.Status.Failures != 0 {
		t.Fatalf("after a graceful stop: lastAttempt %+v, failures %d; want none and 0", gp.Status.LastAttempt, gp.Status.Failures)
	}
	_, logs, _ := start(t)
	eventually.True(t, 60*time.Second, "onStartup to run again", func() bool { return countLines(t, journal, "onStartup ") == 2 })
	if gp := getPackage(t, ns, "slow"); gp.Status.Failures != 0 {
		t.Errorf("failures %d after a restart that followed a graceful stop, want 0", gp.Status.Failures)
	}
	if n := logs.Count("cut short by the operator's stop"); n != 0 {
		t.Errorf("the restart took the graceful stop for a crash:\n%s", strings.Join(logs.Get(), "\n"))
	}
}
