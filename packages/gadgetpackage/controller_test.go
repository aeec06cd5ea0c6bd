package gadgetpackage_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/gadgetpackage"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repo"
	"github.com/gadgetpm/gadgetpm/packages/repository"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
)

var env *testenv.Env

var skipNameValidation = true

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// start runs the controller with a real queue service and package manager
// until the test ends.
func start(t *testing.T) *queue.Service {
	t.Helper()
	s, err := store.New(t.TempDir(), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := fetch.New(fetch.Options{Reader: env.Client, Store: s})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := manager.New(manager.Options{Fetcher: f})
	if err != nil {
		t.Fatal(err)
	}
	qs := queue.NewService(queue.Options{BackoffBase: 10 * time.Millisecond, BackoffCap: 50 * time.Millisecond})
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		// Each test starts its own controller.
		Controller: config.Controller{SkipNameValidation: &skipNameValidation}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := gadgetpackage.New(gadgetpackage.Options{Client: mgr.GetClient(), Manager: pm, Queue: qs, Recorder: mgr.GetEventRecorderFor("gadgetpm"), MaxAttempts: 2, RemoveGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if err := (&repository.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan struct{})
	go func() {
		defer close(events)
		for ev := range qs.Events() {
			rec.HandleEvent(ev)
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
		if err := qs.Stop(stopCtx); err != nil {
			t.Error(err)
		}
		<-events
	})
	return qs
}

func createRepo(t *testing.T, name, url string) {
	t.Helper()
	pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.PackageRepositorySpec{URL: url, Interval: metav1.Duration{Duration: time.Second}}}
	if err := env.Client.Create(context.Background(), pr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
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
	deadline := time.Now().Add(90 * time.Second)
	for {
		var gp v1alpha1.GadgetPackage
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp)
		if err == nil && cond(&gp) {
			return &gp
		}
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: not %s within 90s: %+v (err %v)", ns, name, what, gp.Status, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
		deadline := time.Now().Add(90 * time.Second)
		for {
			err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &v1alpha1.GadgetPackage{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not deleted: %v", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func TestSpecChangeRearmsAndMissingRequirementDisables(t *testing.T) {
	start(t)
	ns := env.Namespace(t)
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "lonely", Requires: "net-base >=1.2"})
	repoName := strings.ToLower(ns) + "-repo"
	createRepo(t, repoName, "file://"+out)

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
	if gp.Status.Enabled || gp.Status.Reason != "requires net-base >=1.2, which no GadgetPackage installs" {
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

func TestRemoveCleansUpCustomQueues(t *testing.T) {
	qs := start(t)
	ns := env.Namespace(t)
	hook := "#!/bin/sh\necho '{\"configVersion\":\"v1\",\"kubernetes\":[{\"name\":\"pods\",\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"queue\":\"pods\"}]}'\n"
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "watcher", Hooks: map[string]string{"watch.sh": hook}})
	repoName := strings.ToLower(ns) + "-repo"
	createRepo(t, repoName, "file://"+out)
	createPackage(t, ns, "watcher", repoName, "*")
	waitFor(t, ns, "watcher", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })

	// A hook run is busy in the package's custom queue when it is deleted.
	b := &blocker{cancelled: make(chan struct{})}
	if err := qs.Enqueue(queue.PackageQueueName(ns+".watcher", "pods"), b); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(context.Background(), &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watcher"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.cancelled:
	case <-time.After(60 * time.Second):
		t.Fatal("the custom queue's running task was not cancelled by the removal")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "watcher"}, &v1alpha1.GadgetPackage{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not deleted: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
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
	if _, err := repo.Build(context.Background(), dir+"/more", out, repo.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	gp := waitFor(t, ns, "base", "Ready at 1.1.0", func(gp *v1alpha1.GadgetPackage) bool {
		return isTrue(gp, v1alpha1.ConditionReady) && gp.Status.Version == "1.1.0"
	})
	if gp.Status.Phase != v1alpha1.PhaseRunning || gp.Status.LastAttemptedVersion != "1.1.0" {
		t.Errorf("status after upgrade = %+v", gp.Status)
	}
	// It stays at 1.1.0: 2.0.0 is outside ^1. The repository lists 2.0.0 ...
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var pr v1alpha1.PackageRepository
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: repoName}, &pr); err != nil {
			t.Fatal(err)
		}
		if lists(&pr, "base", "2.0.0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("repository status %+v does not list base 2.0.0 within 30s", pr.Status.Packages)
		}
	}
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
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "strict"})
	repoName := strings.ToLower(ns) + "-repo"
	createRepo(t, repoName, "file://"+out)
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
