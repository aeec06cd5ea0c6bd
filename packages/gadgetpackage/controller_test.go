package gadgetpackage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/gadgetpackage"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/packages/packagerepository"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler"
)

var env *testenv.Env

var skipNameValidation = true

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// setup changes what start builds; the zero value is the default.
type setup struct {
	// limits bound the extraction of archives.
	limits archive.Limits
	// hookTimeout bounds each `hook --config` of the loader.
	hookTimeout time.Duration
	// queue, when set, wraps the queue service the controller is given.
	queue func(gadgetpackage.Queue) gadgetpackage.Queue
	// tap sees every queue event before the controller does, handled
	// after it did.
	tap, handled func(queue.Event)
	// hooks, when set, is the package manager's hook runner.
	hooks manager.HookRunner
	// releaser, when set, is the package manager's Helm releaser.
	releaser manager.Releaser
	// reconciler, when set, is handed the controller.
	reconciler func(*gadgetpackage.Reconciler)
	// client, when set, wraps the client the controller is given.
	client func(client.Client) client.Client
}

// start runs the controller with a real queue service and package manager
// until the test ends.
func start(t *testing.T) *queue.Service { return startWith(t, setup{}) }

func startWith(t *testing.T, su setup) *queue.Service {
	t.Helper()
	s, err := store.New(t.TempDir(), su.limits)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fetch.New(fetch.Options{Reader: env.Client, Store: s, Loader: loader.Options{HookTimeout: su.hookTimeout}})
	if err != nil {
		t.Fatal(err)
	}
	sch := scheduler.New(scheduler.Options{})
	pm, err := manager.New(manager.Options{Fetcher: f, Hooks: su.hooks, Releaser: su.releaser, Scheduler: sch})
	if err != nil {
		t.Fatal(err)
	}
	qs := queue.NewService(queue.Options{BackoffBase: 10 * time.Millisecond, BackoffCap: 50 * time.Millisecond})
	var q gadgetpackage.Queue = qs
	if su.queue != nil {
		q = su.queue(qs)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: env.CacheOptions(cache.Options{}),
		// Each test starts its own controller.
		Controller: config.Controller{SkipNameValidation: &skipNameValidation}})
	if err != nil {
		t.Fatal(err)
	}
	c := mgr.GetClient()
	if su.client != nil {
		c = su.client(c)
	}
	rec, err := gadgetpackage.New(gadgetpackage.Options{Client: c, Manager: pm, Queue: q, Recorder: mgr.GetEventRecorderFor("gadgetpm"), MaxAttempts: 2, RemoveGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if su.reconciler != nil {
		su.reconciler(rec)
	}
	if err := rec.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if err := (&packagerepository.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan struct{})
	go func() {
		defer close(events)
		for ev := range qs.Events() {
			if su.tap != nil {
				su.tap(ev)
			}
			rec.HandleEvent(ev)
			if su.handled != nil {
				su.handled(ev)
			}
		}
	}()
	// The scheduler decides enablement, and its changes start and stop
	// packages, as the coordinator wires them.
	sch.Resume()
	enablement := make(chan struct{})
	go func() {
		defer close(enablement)
		for ev := range sch.Events() {
			rec.HandleSchedulerEvent(ev)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		if err := sch.Stop(stopCtx); err != nil {
			t.Error(err)
		}
		<-enablement
		if err := qs.Stop(stopCtx); err != nil {
			t.Error(err)
		}
		<-events
	})
	return qs
}

func createRepo(t *testing.T, name, url string) {
	t.Helper()
	pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.PackageRepositorySpec{URL: url, Interval: metav1.Duration{Duration: time.Second},
		Insecure: strings.HasPrefix(url, "http://")}} // test servers are plain HTTP on loopback
	if err := env.Client.Create(context.Background(), pr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
}

// fileRepo builds a repository of sources and creates a PackageRepository
// named after ns for it; it returns that name and the directory.
func fileRepo(t *testing.T, ns string, sources ...packagetest.Source) (string, string) {
	t.Helper()
	out := packagetest.Repo(t, t.TempDir(), sources...)
	repoName := strings.ToLower(ns) + "-repo"
	createRepo(t, repoName, "file://"+out)
	return repoName, out
}

func createPackage(t *testing.T, ns, name, repository, constraint string) {
	t.Helper()
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.GadgetPackageSpec{Repository: repository, Package: name, Version: constraint}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls the GadgetPackage until cond holds.
func waitFor(t *testing.T, ns, name, what string, cond func(*v1alpha1.GadgetPackage) bool) *v1alpha1.GadgetPackage {
	t.Helper()
	return env.WaitPackage(t, ns, name, what, cond)
}

func condition(gp *v1alpha1.GadgetPackage, typ string) *metav1.Condition {
	return meta.FindStatusCondition(gp.Status.Conditions, typ)
}

func isTrue(gp *v1alpha1.GadgetPackage, typ string) bool {
	c := condition(gp, typ)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == gp.Generation
}

func TestInstallStallRetryAndRemove(t *testing.T) {
	start(t)
	ns := env.Namespace(t)
	out := packagetest.Repo(t, t.TempDir(),
		packagetest.Source{Name: "base", Version: "1.2.0"},
		packagetest.Source{Name: "app", Requires: "base ^1"})
	repoName := strings.ToLower(ns) + "-repo"

	// The repository does not exist yet: the package stalls after its
	// attempts, with the error.
	createPackage(t, ns, "base", repoName, "^1")
	gp := waitFor(t, ns, "base", "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
	if c := condition(gp, v1alpha1.ConditionStalled); !strings.Contains(c.Message, "read PackageRepository "+repoName) || !strings.Contains(c.Message, "after 2 attempt(s)") {
		t.Errorf("Stalled message = %q", c.Message)
	}
	if c := condition(gp, v1alpha1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonIndexFailed {
		t.Errorf("Ready = %+v", c)
	}
	if gp.Status.Phase != v1alpha1.PhasePending || len(gp.Finalizers) != 1 {
		t.Errorf("status %+v finalizers %v", gp.Status, gp.Finalizers)
	}

	// Fix the cause and set the retry annotation: it installs.
	createRepo(t, repoName, "file://"+out)
	patch := client.MergeFrom(gp.DeepCopy())
	gp.Annotations = map[string]string{v1alpha1.RetryAnnotation: "1"}
	if err := env.Client.Patch(context.Background(), gp, patch); err != nil {
		t.Fatal(err)
	}
	gp = waitFor(t, ns, "base", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })
	if gp.Status.Phase != v1alpha1.PhaseRunning || gp.Status.Version != "1.2.0" || len(gp.Status.Digest) != 64 ||
		gp.Status.Catalog == nil || len(gp.Status.Hooks) != 1 || !gp.Status.Enabled || gp.Status.LastHandledRetry != "1" {
		t.Errorf("status after retry = %+v", gp.Status)
	}
	if condition(gp, v1alpha1.ConditionStalled) != nil || condition(gp, v1alpha1.ConditionReconciling).Status != metav1.ConditionFalse {
		t.Errorf("conditions = %+v", gp.Status.Conditions)
	}

	// A package requiring base runs too.
	createPackage(t, ns, "app", repoName, "*")
	waitFor(t, ns, "app", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })

	// Deleting base is refused while app requires it, with a message naming app.
	if err := env.Client.Delete(context.Background(), &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "base"}}); err != nil {
		t.Fatal(err)
	}
	gp = waitFor(t, ns, "base", "refusing deletion", func(gp *v1alpha1.GadgetPackage) bool {
		c := condition(gp, v1alpha1.ConditionReady)
		return c != nil && c.Reason == v1alpha1.ReasonDependencyNotMet
	})
	if c := condition(gp, v1alpha1.ConditionReady); c.Message != fmt.Sprintf("cannot delete: remove %s.base: required by %s.app: remove or change them first", ns, ns) {
		t.Errorf("refusal message = %q", c.Message)
	}

	// Deleting app first lets both go.
	if err := env.Client.Delete(context.Background(), &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app", "base"} {
		eventually.NoError(t, 90*time.Second, name+" to be deleted", func() error {
			err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &v1alpha1.GadgetPackage{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("get: %v", err)
		})
	}
}

func TestSpecChangeRearmsAndMissingRequirementDisables(t *testing.T) {
	start(t)
	ns := env.Namespace(t)
	repoName, _ := fileRepo(t, ns, packagetest.Source{Name: "lonely", Requires: "net-base >=1.2"})

	createPackage(t, ns, "lonely", repoName, ">=3")
	gp := waitFor(t, ns, "lonely", "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
	if c := condition(gp, v1alpha1.ConditionReady); c.Reason != v1alpha1.ReasonDownloadFailed || !strings.Contains(c.Message, `no version matching ">=3"`) {
		t.Errorf("Ready = %+v", c)
	}
	// A spec change re-arms it; it loads but its requirement is missing.
	patch := client.MergeFrom(gp.DeepCopy())
	gp.Spec.Version = "*"
	if err := env.Client.Patch(context.Background(), gp, patch); err != nil {
		t.Fatal(err)
	}
	gp = waitFor(t, ns, "lonely", "Loaded", func(gp *v1alpha1.GadgetPackage) bool {
		c := condition(gp, v1alpha1.ConditionReady)
		return gp.Status.Phase == v1alpha1.PhaseLoaded && c != nil && c.Reason == v1alpha1.ReasonDependencyNotMet && c.ObservedGeneration == gp.Generation
	})
	if gp.Status.Enabled || gp.Status.Reason != "requires net-base >=1.2, which is not installed" {
		t.Errorf("status = %+v", gp.Status)
	}
	if condition(gp, v1alpha1.ConditionStalled) != nil {
		t.Errorf("still Stalled: %+v", gp.Status.Conditions)
	}
}

// blocker runs until its context ends.
type blocker struct{ cancelled chan struct{} }

func (b *blocker) Name() string { return "block" }
func (b *blocker) Execute(ctx context.Context) error {
	<-ctx.Done()
	close(b.cancelled)
	return ctx.Err()
}

// watchedQueue passes tasks on to the queue service, calling before as
// each one starts an attempt.
type watchedQueue struct {
	gadgetpackage.Queue
	before func(task string)
}

func (w watchedQueue) Enqueue(name string, t queue.Task, opts ...queue.EnqueueOption) error {
	return w.Queue.Enqueue(name, watchedTask{Task: t, before: w.before}, opts...)
}

type watchedTask struct {
	queue.Task
	before func(task string)
}

func (w watchedTask) Execute(ctx context.Context) error {
	w.before(w.Name())
	return w.Task.Execute(ctx)
}

func TestRemoveCleansUpCustomQueues(t *testing.T) {
	ns := env.Namespace(t)
	key := ns + ".watcher"
	b := &blocker{cancelled: make(chan struct{})}
	// What had happened to the custom queue's task when Uninstall began.
	atUninstall := make(chan bool, 1)
	qs := startWith(t, setup{queue: func(q gadgetpackage.Queue) gadgetpackage.Queue {
		return watchedQueue{Queue: q, before: func(task string) {
			if task != "uninstall "+key {
				return
			}
			select {
			case <-b.cancelled:
				atUninstall <- true
			default:
				atUninstall <- false
			}
		}}
	}})
	hook := "#!/bin/sh\necho '{\"configVersion\":\"v1\",\"kubernetes\":[{\"name\":\"pods\",\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"queue\":\"pods\"}]}'\n"
	repoName, _ := fileRepo(t, ns, packagetest.Source{Name: "watcher", Hooks: map[string]string{"watch.sh": hook}})
	createPackage(t, ns, "watcher", repoName, "*")
	waitFor(t, ns, "watcher", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })

	// A hook run is busy in the package's custom queue when it is deleted.
	if err := qs.Enqueue(queue.PackageQueueName(key, "pods"), b); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(context.Background(), &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watcher"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case cancelled := <-atUninstall:
		if !cancelled {
			t.Fatal("Uninstall began while the custom queue's task still ran; the design removes custom queues first")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Uninstall did not run within 60s")
	}
	eventually.NoError(t, 60*time.Second, "watcher to be deleted", func() error {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "watcher"}, &v1alpha1.GadgetPackage{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get: %v", err)
	})
	for _, q := range qs.Dump().Queues {
		if strings.HasPrefix(q.Name, key) {
			t.Errorf("queue %s is left after the removal", q.Name)
		}
	}
}

func TestUpgradeWhenTheRepositoryGetsANewVersion(t *testing.T) {
	start(t)
	ns := env.Namespace(t)
	dir := t.TempDir()
	out := packagetest.Repo(t, dir, packagetest.Source{Name: "base", Version: "1.0.0"})
	repoName := strings.ToLower(ns) + "-repo"
	createRepo(t, repoName, "file://"+out)
	createPackage(t, ns, "base", repoName, "^1")
	waitFor(t, ns, "base", "Ready at 1.0.0", func(gp *v1alpha1.GadgetPackage) bool {
		return isTrue(gp, v1alpha1.ConditionReady) && gp.Status.Version == "1.0.0"
	})

	// 1.1.0 (allowed) and 2.0.0 (not allowed) are published.
	packagetest.Write(t, dir+"/more/a", packagetest.Source{Name: "base", Version: "1.1.0"})
	packagetest.Write(t, dir+"/more/b", packagetest.Source{Name: "base", Version: "2.0.0"})
	if _, err := chartrepo.Build(context.Background(), dir+"/more", out, chartrepo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	gp := waitFor(t, ns, "base", "Ready at 1.1.0", func(gp *v1alpha1.GadgetPackage) bool {
		return isTrue(gp, v1alpha1.ConditionReady) && gp.Status.Version == "1.1.0"
	})
	if gp.Status.Phase != v1alpha1.PhaseRunning || gp.Status.LastAttemptedVersion != "1.1.0" {
		t.Errorf("status after upgrade = %+v", gp.Status)
	}
	// It stays at 1.1.0: 2.0.0 is outside ^1. The repository lists 2.0.0 ...
	eventually.NoError(t, 30*time.Second, "the repository status to list base 2.0.0", func() error {
		var pr v1alpha1.PackageRepository
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: repoName}, &pr); err != nil {
			return err
		}
		if lists(&pr, "base", "2.0.0") {
			return nil
		}
		return fmt.Errorf("packages %+v", pr.Status.Packages)
	})
	// ... and the controller looks again once idle: a new retry value makes
	// it reconcile and record the value in status.lastHandledRetry, in the
	// same status write that shows whether it planned an upgrade.
	waitFor(t, ns, "base", "idle", func(gp *v1alpha1.GadgetPackage) bool { return !isTrue(gp, v1alpha1.ConditionReconciling) })
	patch := client.MergeFrom(gp.DeepCopy())
	metav1.SetMetaDataAnnotation(&gp.ObjectMeta, v1alpha1.RetryAnnotation, "look-again")
	if err := env.Client.Patch(context.Background(), gp, patch); err != nil {
		t.Fatal(err)
	}
	now := waitFor(t, ns, "base", "reconciled after 2.0.0 was listed", func(gp *v1alpha1.GadgetPackage) bool {
		return gp.Status.LastHandledRetry == "look-again"
	})
	if now.Status.Version != "1.1.0" || isTrue(now, v1alpha1.ConditionReconciling) || !isTrue(now, v1alpha1.ConditionReady) {
		t.Errorf("after a reconcile that saw 2.0.0: version %s, Reconciling %+v, Ready %+v; want 1.1.0, idle and Ready",
			now.Status.Version, condition(now, v1alpha1.ConditionReconciling), condition(now, v1alpha1.ConditionReady))
	}
}

// lists reports whether the repository's status lists version of pkg.
func lists(pr *v1alpha1.PackageRepository, pkg, version string) bool {
	for _, p := range pr.Status.Packages {
		if p.Name == pkg && slices.Contains(p.Versions, version) {
			return true
		}
	}
	return false
}

func TestSettingsThatFailTheSchemaStallAtOnce(t *testing.T) {
	start(t)
	ns := env.Namespace(t)
	repoName, _ := fileRepo(t, ns, packagetest.Source{Name: "strict"})
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: "strict", Namespace: ns},
		Spec: v1alpha1.GadgetPackageSpec{Repository: repoName, Package: "strict", Settings: &apiextensionsv1.JSON{Raw: []byte(`{"maxRows": 0}`)}}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
	gp = waitFor(t, ns, "strict", "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
	c := condition(gp, v1alpha1.ConditionReady)
	if c.Reason != v1alpha1.ReasonInvalidSettings || !strings.Contains(c.Message, "after 1 attempt(s)") || !strings.Contains(c.Message, "/maxRows") {
		t.Errorf("Ready = %+v", c)
	}
	// Fixing the settings (a spec change) installs it.
	patch := client.MergeFrom(gp.DeepCopy())
	gp.Spec.Settings = &apiextensionsv1.JSON{Raw: []byte(`{"maxRows": 3}`)}
	if err := env.Client.Patch(context.Background(), gp, patch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ns, "strict", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })
}

// TestRepositoryLossKeepsThePackageRunning: once installed, a package
// does not depend on its repository; losing it shows on the
// PackageRepository only, also after a retry.
func TestRepositoryLossKeepsThePackageRunning(t *testing.T) {
	start(t)
	ns := env.Namespace(t)
	repoName, out := fileRepo(t, ns, packagetest.Source{Name: "keeper"})
	createPackage(t, ns, "keeper", repoName, "*")
	gp := waitFor(t, ns, "keeper", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })
	readySince := condition(gp, v1alpha1.ConditionReady).LastTransitionTime

	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	c := eventually.Value(t, 60*time.Second, "PackageRepository "+repoName+" to be Ready=False after its directory went", func() (*metav1.Condition, error) {
		var pr v1alpha1.PackageRepository
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: repoName}, &pr); err != nil {
			return nil, err
		}
		if c := meta.FindStatusCondition(pr.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
			return c, nil
		}
		return nil, fmt.Errorf("conditions %+v", pr.Status.Conditions)
	})
	if !strings.Contains(c.Message, "index.yaml") {
		t.Errorf("PackageRepository Ready message = %q, want it to name index.yaml", c.Message)
	}
	stillRunning := func(when string, gp *v1alpha1.GadgetPackage) {
		t.Helper()
		c := condition(gp, v1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || !c.LastTransitionTime.Equal(&readySince) || gp.Status.Phase != v1alpha1.PhaseRunning || gp.Status.Version != "1.0.0" {
			t.Errorf("%s: Ready %+v (Ready since %s), phase %s, version %s", when, c, readySince, gp.Status.Phase, gp.Status.Version)
		}
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "keeper"}, gp); err != nil {
		t.Fatal(err)
	}
	stillRunning("after the repository went", gp)

	// A retry is handled and changes nothing.
	patch := client.MergeFrom(gp.DeepCopy())
	gp.Annotations = map[string]string{v1alpha1.RetryAnnotation: "1"}
	if err := env.Client.Patch(context.Background(), gp, patch); err != nil {
		t.Fatal(err)
	}
	gp = waitFor(t, ns, "keeper", "handling the retry", func(gp *v1alpha1.GadgetPackage) bool {
		return gp.Status.LastHandledRetry == "1" && condition(gp, v1alpha1.ConditionReconciling) != nil &&
			condition(gp, v1alpha1.ConditionReconciling).Status == metav1.ConditionFalse
	})
	stillRunning("after the retry", gp)
}

// TestSpecChangeCancelsTheRunningTask: a spec Update ends the task of the
// old plan that is running — here a hook's --config that would hang for
// minutes — and the new plan runs.
func TestSpecChangeCancelsTheRunningTask(t *testing.T) {
	startWith(t, setup{hookTimeout: 10 * time.Minute})
	ns := env.Namespace(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	hang := "#!/bin/sh\necho $$ > " + pidFile + ".tmp && mv " + pidFile + ".tmp " + pidFile + "\nexec sleep 600\n"
	repoName, _ := fileRepo(t, ns,
		packagetest.Source{Name: "slow", Version: "1.0.0", Hooks: map[string]string{"hang.sh": hang}},
		packagetest.Source{Name: "slow", Version: "2.0.0"})
	createPackage(t, ns, "slow", repoName, "1.0.0")

	// Load of 1.0.0 is running its hook.
	b := eventually.Value(t, 60*time.Second, "the hook of 1.0.0 to start", func() ([]byte, error) { return os.ReadFile(pidFile) })
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "slow"}, &gp); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(gp.DeepCopy())
	gp.Spec.Version = "2.0.0"
	if err := env.Client.Patch(context.Background(), &gp, patch); err != nil {
		t.Fatal(err)
	}
	// The old Load is cancelled: its hook is killed long before its
	// ten-minute timeout.
	eventually.True(t, 60*time.Second, fmt.Sprintf("the hook (pid %d) of the old plan to end after the spec change", pid), func() bool { return syscall.Kill(pid, 0) != nil })
	got := waitFor(t, ns, "slow", "Ready at 2.0.0", func(gp *v1alpha1.GadgetPackage) bool {
		return isTrue(gp, v1alpha1.ConditionReady) && gp.Status.Version == "2.0.0"
	})
	if got.Status.Phase != v1alpha1.PhaseRunning || condition(got, v1alpha1.ConditionStalled) != nil {
		t.Errorf("status after the spec change = %+v", got.Status)
	}
}

// gatedHooks is a hook runner whose onStartup runs wait for release (or
// for their task's cancellation); it counts the runs that began.
type gatedHooks struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	runs             map[string]int
}

func (h *gatedHooks) Prepare(context.Context, string, *loader.Package, *v1alpha1.GadgetPackage) error {
	return nil
}
func (h *gatedHooks) SetSettings(string, *v1alpha1.GadgetPackage) error { return nil }
func (h *gatedHooks) RunBinding(ctx context.Context, _, binding string) error {
	h.mu.Lock()
	h.runs[binding]++
	h.mu.Unlock()
	if binding != "onStartup" {
		return nil
	}
	h.once.Do(func() { close(h.entered) })
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
func (h *gatedHooks) Enable(context.Context, string) error  { return nil }
func (h *gatedHooks) Disable(string)                        {}
func (h *gatedHooks) Values(string) (map[string]any, error) { return map[string]any{}, nil }
func (h *gatedHooks) Forget(string)                         {}
func (h *gatedHooks) count(binding string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runs[binding]
}

// The scheduler's word that a package may run arrives while the plan that
// loaded it is in its onStartup hooks: that plan goes on, uncancelled, and
// onStartup and Run happen once.
func TestEnableEventDuringStartupJoinsThePlan(t *testing.T) {
	h := &gatedHooks{entered: make(chan struct{}), release: make(chan struct{}), runs: map[string]int{}}
	var rec *gadgetpackage.Reconciler
	startWith(t, setup{hooks: h, reconciler: func(r *gadgetpackage.Reconciler) { rec = r }})
	ns := env.Namespace(t)
	repoName, _ := fileRepo(t, ns, packagetest.Source{Name: "app"})
	createPackage(t, ns, "app", repoName, "*")
	select {
	case <-h.entered:
	case <-time.After(60 * time.Second):
		t.Fatal("the onStartup hooks of app did not run within 60s")
	}
	rec.HandleSchedulerEvent(scheduler.Event{Status: scheduler.Status{Key: ns + ".app", Enabled: true, Cause: scheduler.CauseEnabled}, Flipped: true})
	close(h.release)
	got := waitFor(t, ns, "app", "Running", func(gp *v1alpha1.GadgetPackage) bool {
		return gp.Status.Phase == v1alpha1.PhaseRunning && isTrue(gp, v1alpha1.ConditionReady)
	})
	if n := h.count("onStartup"); n != 1 {
		t.Errorf("onStartup ran %d times, want once", n)
	}
	if n := h.count("beforeHelm"); n != 1 {
		t.Errorf("beforeHelm ran %d times, want once (one Run)", n)
	}
	if c := condition(got, v1alpha1.ConditionStalled); c != nil {
		t.Errorf("Stalled after the event: %+v", c)
	}
}
