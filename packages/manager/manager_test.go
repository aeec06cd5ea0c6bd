package manager_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler"
)

var ctx = context.Background()

// journal records what the package manager asked of Helm and hooks, in
// order; it stands in for pkg/nelm and pkg/hooks, which implement the
// interfaces for real.
type journal struct {
	mu       sync.Mutex
	calls    []string
	rev      int
	failHelm error
	// failEnable fails that many Enable calls.
	failEnable int
	hooks      map[string][]loader.Hook
	m          *manager.Manager
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, s)
}

func (j *journal) Upgrade(_ context.Context, r manager.Release) (int, error) {
	if j.failHelm != nil {
		return 0, j.failHelm
	}
	for _, f := range r.Chart.Files {
		if strings.HasPrefix(f.Name, "gadget/") {
			return 0, fmt.Errorf("chart carries %s", f.Name)
		}
	}
	j.add(fmt.Sprintf("upgrade %s/%s maxRows=%v", r.Namespace, r.Name, r.Values["maxRows"]))
	j.rev++
	return j.rev, nil
}

// InstallCRDs records the crds/ files of charts that have some.
func (j *journal) InstallCRDs(_ context.Context, r manager.Release) error {
	var files []string
	for _, c := range r.Chart.CRDObjects() {
		files = append(files, c.Name)
	}
	if len(files) > 0 {
		j.add(fmt.Sprintf("crds %s/%s %s", r.Namespace, r.Name, strings.Join(files, ",")))
	}
	return nil
}

func (j *journal) Delete(_ context.Context, r manager.Release) error {
	j.add("delete " + r.Namespace + "/" + r.Name)
	return nil
}

// The journal stands in for packages/hookhost's Host: it records which
// bindings ran, in the order the manager asks for them.
func (j *journal) Prepare(_ context.Context, key string, p *loader.Package, _ *v1alpha1.GadgetPackage) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.hooks == nil {
		j.hooks = map[string][]loader.Hook{}
	}
	j.hooks[key] = p.Hooks
	return nil
}

func (j *journal) SetSettings(string, *v1alpha1.GadgetPackage) error { return nil }

func (j *journal) RunBinding(_ context.Context, key, binding string) error {
	j.mu.Lock()
	hooks := j.hooks[key]
	j.mu.Unlock()
	for _, h := range hooks {
		for _, b := range h.Bindings {
			if b == binding {
				j.add(fmt.Sprintf("hook %s %s %s", key, h.Name, binding))
			}
		}
	}
	return nil
}

func (j *journal) Enable(_ context.Context, key string) error {
	j.add("enable " + key)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failEnable > 0 {
		j.failEnable--
		return errors.New("synchronization of hook all.sh binding configs: no such resource")
	}
	return nil
}

func (j *journal) Disable(key string) { j.add("disable " + key) }

// Values are the manager's own (settings over defaults): the journal
// makes no values patches.
func (j *journal) Values(key string) (map[string]any, error) {
	st, _ := j.m.State(key)
	return st.Values, nil
}

func (j *journal) Forget(key string) { j.add("forget " + key) }

// WaitUnsubscribed stands in for pkg/coordinator's wait for the nodes to stop
// the package's Traces.
func (j *journal) WaitUnsubscribed(_ context.Context, gp *v1alpha1.GadgetPackage) error {
	j.add("unsubscribed " + gp.Namespace + "/" + gp.Name)
	return nil
}

func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.calls
	j.calls = nil
	return out
}

const allBindings = `#!/bin/sh
echo '{"configVersion":"v1","onStartup":1,"beforeHelm":1,"afterHelm":1,"afterDeleteHelm":1}'
`

// resumedScheduler is the enablement scheduler a Manager needs, resumed,
// its events read (and dropped: no controller acts on them here) until the
// test ends.
func resumedScheduler(t *testing.T) *scheduler.Scheduler {
	t.Helper()
	sch := scheduler.New(scheduler.Options{})
	sch.Resume()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range sch.Events() {
		}
	}()
	t.Cleanup(func() {
		if err := sch.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		<-drained
	})
	return sch
}

func setup(t *testing.T, sources ...packagetest.Source) (*manager.Manager, *journal) {
	t.Helper()
	return setupWith(t, nil, sources...)
}

// setupWith is setup with a chance to change the manager's options.
func setupWith(t *testing.T, change func(*manager.Options), sources ...packagetest.Source) (*manager.Manager, *journal) {
	t.Helper()
	out := packagetest.Repo(t, t.TempDir(), sources...)
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&v1alpha1.PackageRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "local"}, Spec: v1alpha1.PackageRepositorySpec{URL: "file://" + out},
	}).Build()
	s, err := store.New(t.TempDir(), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := fetch.New(fetch.Options{Reader: reader, Store: s})
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	opts := manager.Options{Fetcher: f, Releaser: j, Hooks: j, Unsubscriber: j, Scheduler: resumedScheduler(t)}
	if change != nil {
		change(&opts)
	}
	m, err := manager.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	j.m = m
	return m, j
}

func gp(name, pkg, settings string) *v1alpha1.GadgetPackage {
	g := &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: "local", Package: pkg, Version: "*"},
	}
	if settings != "" {
		g.Spec.Settings = &apiextensionsv1.JSON{Raw: []byte(settings)}
	}
	return g
}

// runAll runs tasks in order as the package's main queue would, stopping
// at the first error.
func runAll(t *testing.T, tasks []queue.Task) error {
	t.Helper()
	for _, task := range tasks {
		if err := task.Execute(ctx); err != nil {
			return fmt.Errorf("%s: %w", task.Name(), err)
		}
	}
	return nil
}

func names(tasks []queue.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.Name())
	}
	return out
}

func TestLifecycle(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "execsnoop", Hooks: map[string]string{"all.sh": allBindings}})
	g := gp("exec", "execsnoop", `{"maxRows": 5}`)

	tasks := m.Plan(g)
	want := []string{"download ns.exec", "install ns.exec", "load ns.exec", "startup ns.exec", "run ns.exec"}
	if !reflect.DeepEqual(names(tasks), want) {
		t.Fatalf("new package plan = %v, want %v", names(tasks), want)
	}
	if st, _ := m.State("ns.exec"); st.Phase != v1alpha1.PhasePending {
		t.Errorf("phase before tasks = %s", st.Phase)
	}
	if err := runAll(t, tasks); err != nil {
		t.Fatal(err)
	}
	st, _ := m.State("ns.exec")
	if st.Phase != v1alpha1.PhaseRunning || !st.Enabled || st.Version != "1.0.0" || len(st.Digest) != 64 || st.HelmRevision != 1 {
		t.Errorf("state after install = %+v", st)
	}
	if st.Values["maxRows"] != float64(5) || st.Values["ignoreFailed"] != false {
		t.Errorf("values = %v, want settings over defaults", st.Values)
	}
	if len(st.Hooks) != 1 || st.Catalog == nil || len(st.Catalog.DataSources) != 1 {
		t.Errorf("hooks %v catalog %v", st.Hooks, st.Catalog)
	}
	wantCalls := []string{"hook ns.exec all.sh onStartup", "enable ns.exec", "hook ns.exec all.sh beforeHelm", "upgrade ns/exec maxRows=5", "hook ns.exec all.sh afterHelm"}
	if got := j.take(); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("calls = %v, want %v", got, wantCalls)
	}

	// Nothing changed: nothing to do.
	if tasks := m.Plan(g); len(tasks) != 0 {
		t.Errorf("unchanged plan = %v", names(tasks))
	}

	// Settings change: ApplySettings + Run.
	g2 := gp("exec", "execsnoop", `{"maxRows": 7}`)
	tasks = m.Plan(g2)
	if !reflect.DeepEqual(names(tasks), []string{"apply-settings ns.exec", "run ns.exec"}) {
		t.Fatalf("settings plan = %v", names(tasks))
	}
	if err := runAll(t, tasks); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.exec"); st.Values["maxRows"] != float64(7) || st.HelmRevision != 2 {
		t.Errorf("after settings change: %+v", st)
	}
	j.take()

	// Settings that fail the schema: the error says so, old values stay.
	tasks = m.Plan(gp("exec", "execsnoop", `{"maxRows": 0}`))
	err := runAll(t, tasks)
	if fetch.ReasonOf(err, "") != v1alpha1.ReasonInvalidSettings || !strings.Contains(err.Error(), "/maxRows") || !queue.IsTerminal(err) {
		t.Fatalf("bad settings: %v (terminal: %v)", err, queue.IsTerminal(err))
	}
	if st, _ := m.State("ns.exec"); st.Values["maxRows"] != float64(7) || st.Phase != v1alpha1.PhaseRunning {
		t.Errorf("bad settings changed the state: %+v", st)
	}

	// Disable keeps it loaded.
	off := gp("exec", "execsnoop", `{"maxRows": 0}`)
	off.Spec.Enabled = new(bool)
	tasks = m.Plan(off)
	if !reflect.DeepEqual(names(tasks), []string{"disable ns.exec"}) {
		t.Fatalf("disable plan = %v", names(tasks))
	}
	if err := runAll(t, tasks); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.exec"); st.Phase != v1alpha1.PhaseLoaded || st.Enabled || st.Reason != "disabled by spec.enabled: false" {
		t.Errorf("after disable: %+v", st)
	}
	if got := j.take(); !reflect.DeepEqual(got, []string{"disable ns.exec"}) {
		t.Errorf("disable calls = %v, want the bindings stopped", got)
	}

	// Remove: Disable, Uninstall (the nodes' Traces stopped, release
	// deleted, afterDeleteHelm run).
	tasks, err = m.PlanRemove("ns.exec")
	if err != nil {
		t.Fatal(err)
	}
	if err := runAll(t, tasks); err != nil {
		t.Fatal(err)
	}
	if got := j.take(); !reflect.DeepEqual(got, []string{"disable ns.exec", "unsubscribed ns/exec", "delete ns/exec", "hook ns.exec all.sh afterDeleteHelm", "forget ns.exec"}) {
		t.Errorf("remove calls = %v", got)
	}
	if _, ok := m.State("ns.exec"); ok {
		t.Error("removed package still has state")
	}
}

func TestRequirements(t *testing.T) {
	m, j := setup(t,
		packagetest.Source{Name: "app", Requires: "base >=1.0"},
		packagetest.Source{Name: "base", Version: "1.2.0"},
		packagetest.Source{Name: "orphan", Requires: "net-base ^2"},
		packagetest.Source{Name: "ping", Requires: "pong"},
		packagetest.Source{Name: "pong", Requires: "ping"},
	)
	install := func(name string) error { return runAll(t, m.Plan(gp(name, name, ""))) }

	// app alone: its requirement is missing, so it loads but does not run.
	if err := install("app"); err != nil {
		t.Fatal(err)
	}
	st, _ := m.State("ns.app")
	if st.Phase != v1alpha1.PhaseLoaded || st.Enabled || st.Reason != "requires base >=1.0, which is not installed" {
		t.Errorf("app without base: %+v", st)
	}
	if got := j.take(); len(got) != 0 {
		t.Errorf("a disabled package called %v", got)
	}

	// base arrives; app's next Run starts it.
	if err := install("base"); err != nil {
		t.Fatal(err)
	}
	if err := runAll(t, m.Plan(func() *v1alpha1.GadgetPackage { g := gp("app", "app", ""); g.Spec.Enabled = new(bool); return g }())); err != nil {
		t.Fatal(err)
	}
	if err := runAll(t, m.Plan(gp("app", "app", ""))); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.app"); st.Phase != v1alpha1.PhaseRunning || !st.Enabled {
		t.Errorf("app with base: %+v", st)
	}

	// base cannot be removed while app requires it.
	if _, err := m.PlanRemove("ns.base"); err == nil || err.Error() != "remove ns.base: required by ns.app: remove or change them first" {
		t.Errorf("remove required package: %v", err)
	}

	if err := install("orphan"); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.orphan"); st.Enabled || st.Reason != "requires net-base ^2, which is not installed" {
		t.Errorf("orphan: %+v", st)
	}

	// A cycle across packages disables both, naming it.
	if err := install("ping"); err != nil {
		t.Fatal(err)
	}
	if err := install("pong"); err != nil {
		t.Fatal(err)
	}
	st, _ = m.State("ns.pong")
	if st.Enabled || st.Reason != "dependency cycle: ns.ping -> ns.pong -> ns.ping" {
		t.Errorf("pong in a cycle: %+v", st)
	}
	// The rest keeps running.
	if st, _ := m.State("ns.base"); st.Phase != v1alpha1.PhaseRunning {
		t.Errorf("base after the cycle appeared: %+v", st)
	}
}

func TestStaleTasksDoNothingAndFailuresKeepState(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "execsnoop", Hooks: map[string]string{"all.sh": allBindings}})
	old := m.Plan(gp("exec", "execsnoop", ""))
	// A newer Update renews the package before the old tasks ran.
	fresh := m.Plan(gp("exec", "execsnoop", `{"maxRows": 3}`))
	if err := runAll(t, old); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.exec"); st.Phase != v1alpha1.PhasePending || len(j.take()) != 0 {
		t.Fatalf("stale tasks acted: %+v", st)
	}
	j.failHelm = errors.New("admission webhook denied the request")
	err := runAll(t, fresh)
	if fetch.ReasonOf(err, "") != v1alpha1.ReasonInstallFailed || !strings.Contains(err.Error(), "upgrade release ns/exec: admission webhook denied") {
		t.Fatalf("failing Helm: %v", err)
	}
	if st, _ := m.State("ns.exec"); st.Phase != v1alpha1.PhaseLoaded {
		t.Errorf("phase after a failed run = %s, want Loaded", st.Phase)
	}
	j.failHelm = nil
	// The queue retries the failed task; it succeeds now.
	if err := fresh[len(fresh)-1].Execute(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.exec"); st.Phase != v1alpha1.PhaseRunning {
		t.Errorf("phase after retry = %s", st.Phase)
	}
}

func TestSchedulerSeesLoadedAndRunningPackages(t *testing.T) {
	sch := scheduler.New(scheduler.Options{})
	t.Cleanup(func() { _ = sch.Stop(context.Background()) })
	go func() {
		for range sch.Events() { // keep the event channel drained
		}
	}()
	sch.Resume()
	if err := sch.SetKubeVersion("1.36.3"); err != nil {
		t.Fatal(err)
	}
	m2, _ := setupWith(t, func(o *manager.Options) { o.Scheduler = sch },
		packagetest.Source{Name: "base", Version: "1.2.0"}, packagetest.Source{Name: "app", Requires: "base ^1"},
		packagetest.Source{Name: "future", KubeVersion: ">=99"})
	// Chart.yaml's kubeVersion reaches the scheduler, which disables the
	// package with a reason naming the constraint.
	if err := runAll(t, m2.Plan(gp("future", "future", ""))); err != nil {
		t.Fatal(err)
	}
	want := "requires Kubernetes >=99, the cluster runs 1.36.3"
	if st, ok := sch.Status("ns.future"); !ok || st.Enabled || st.Cause != scheduler.CauseKubeVersion || st.Reason != want {
		t.Errorf("scheduler status of a package with kubeVersion >=99 = %+v, %v; want disabled by %s: %q", st, ok, scheduler.CauseKubeVersion, want)
	}
	if st, _ := m2.State("ns.future"); st.Enabled || st.Phase != v1alpha1.PhaseLoaded || st.Reason != want {
		t.Errorf("state of a package with kubeVersion >=99 = phase %s enabled %v reason %q; want Loaded, disabled, %q", st.Phase, st.Enabled, st.Reason, want)
	}
	if err := runAll(t, m2.Plan(gp("app", "app", ""))); err != nil {
		t.Fatal(err)
	}
	st, ok := sch.Status("ns.app")
	if !ok || st.Enabled || !strings.Contains(st.Reason, "base") {
		t.Fatalf("scheduler status of app without base = %+v, %v", st, ok)
	}
	if err := runAll(t, m2.Plan(gp("base", "base", ""))); err != nil {
		t.Fatal(err)
	}
	if st, _ := sch.Status("ns.app"); !st.Enabled {
		t.Errorf("scheduler status of app once base runs = %+v", st)
	}
	tasks, err := m2.PlanRemove("ns.app")
	if err != nil {
		t.Fatal(err)
	}
	if err := runAll(t, tasks); err != nil {
		t.Fatal(err)
	}
	if _, ok := sch.Status("ns.app"); ok {
		t.Error("the scheduler still knows a removed package")
	}
}

// A reconcile with an unchanged spec in the middle of a plan must leave
// the plan's remaining tasks current.
func TestReplanWithSameSpecKeepsTheRunningPlan(t *testing.T) {
	m, _ := setup(t, packagetest.Source{})
	tasks := m.Plan(gp("exec", "execsnoop", ""))
	if err := runAll(t, tasks[:3]); err != nil {
		t.Fatal(err)
	}
	if again := m.Plan(gp("exec", "execsnoop", "")); len(again) != 0 {
		t.Fatalf("same spec planned %v", names(again))
	}
	if err := runAll(t, tasks[3:]); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.exec"); st.Phase != v1alpha1.PhaseRunning {
		t.Errorf("phase = %s, want Running", st.Phase)
	}
}

// The scheduler's first word on a package arrives while the plan that
// loaded it is still starting it: the Start it asks for joins that plan
// and finds the package running, so the onStartup hooks and the release
// happen once. Asked while the package waits for a requirement, Start
// starts it.
func TestStartJoinsThePlanThatLoadedThePackage(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "execsnoop", Hooks: map[string]string{"all.sh": allBindings}})
	tasks := m.Plan(gp("exec", "execsnoop", ""))
	if err := runAll(t, tasks[:3]); err != nil { // download, install, load
		t.Fatal(err)
	}
	start := m.PlanStart("ns.exec")
	if !reflect.DeepEqual(names(start), []string{"start ns.exec"}) {
		t.Fatalf("PlanStart of a loaded package = %v, want [start ns.exec]", names(start))
	}
	// The queue runs the plan's own Startup and Run first, then Start.
	if err := runAll(t, append(tasks[3:], start...)); err != nil {
		t.Fatal(err)
	}
	want := []string{"hook ns.exec all.sh onStartup", "enable ns.exec", "hook ns.exec all.sh beforeHelm", "upgrade ns/exec maxRows=<nil>", "hook ns.exec all.sh afterHelm"}
	if got := j.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v (each once)", got, want)
	}
	if st, _ := m.State("ns.exec"); st.Phase != v1alpha1.PhaseRunning || st.HelmRevision != 1 {
		t.Errorf("state = phase %s revision %d, want Running at revision 1", st.Phase, st.HelmRevision)
	}
	// Asked again while it runs: Start does nothing.
	if err := runAll(t, m.PlanStart("ns.exec")); err != nil {
		t.Fatal(err)
	}
	if got := j.take(); len(got) != 0 {
		t.Errorf("Start of a running package made calls %v, want none", got)
	}

}

// A package waiting for a requirement is started by Start once the
// requirement runs.
func TestStartStartsAPackageThatWaited(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "base", Version: "1.2.0"},
		packagetest.Source{Name: "app", Requires: "base ^1", Hooks: map[string]string{"all.sh": allBindings}})
	if err := runAll(t, m.Plan(gp("app", "app", ""))); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.State("ns.app"); st.Phase != v1alpha1.PhaseLoaded || st.Enabled {
		t.Fatalf("app without base: phase %s enabled %v, want Loaded and disabled", st.Phase, st.Enabled)
	}
	if got := j.take(); len(got) != 0 {
		t.Fatalf("app without base ran %v", got)
	}
	if err := runAll(t, m.Plan(gp("base", "base", ""))); err != nil {
		t.Fatal(err)
	}
	j.take()
	start := m.PlanStart("ns.app")
	if err := runAll(t, start); err != nil {
		t.Fatal(err)
	}
	want := []string{"hook ns.app all.sh onStartup", "enable ns.app", "hook ns.app all.sh beforeHelm", "upgrade ns/app maxRows=<nil>", "hook ns.app all.sh afterHelm"}
	if got := j.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls of Start = %v, want %v", got, want)
	}
	if st, _ := m.State("ns.app"); st.Phase != v1alpha1.PhaseRunning {
		t.Errorf("phase after Start = %s, want Running", st.Phase)
	}

	// The requirement stops and comes back before the Disable ran: Start,
	// queued behind the Disable, starts the package again.
	disable := m.PlanDisable("ns.app")
	start = m.PlanStart("ns.app")
	if err := runAll(t, append(disable, start...)); err != nil {
		t.Fatal(err)
	}
	want = append([]string{"disable ns.app"}, want...)
	if got := j.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls of Disable then Start = %v, want %v", got, want)
	}
	if st, _ := m.State("ns.app"); st.Phase != v1alpha1.PhaseRunning {
		t.Errorf("phase after Disable then Start = %s, want Running", st.Phase)
	}
}

// Enabling the bindings fails after the onStartup hooks ran: the retried
// Startup enables them again without re-running onStartup.
func TestRetriedStartupRunsOnStartupOnce(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "execsnoop", Hooks: map[string]string{"all.sh": allBindings}})
	j.failEnable = 1
	tasks := m.Plan(gp("exec", "execsnoop", ""))
	if err := runAll(t, tasks[:3]); err != nil {
		t.Fatal(err)
	}
	if err := tasks[3].Execute(ctx); err == nil || fetch.ReasonOf(err, "") != v1alpha1.ReasonHookFailed {
		t.Fatalf("startup with a failing Enable = %v, want a %s error", err, v1alpha1.ReasonHookFailed)
	}
	if err := runAll(t, tasks[3:]); err != nil { // the queue's retry, then Run
		t.Fatal(err)
	}
	want := []string{"hook ns.exec all.sh onStartup", "enable ns.exec", "enable ns.exec", "hook ns.exec all.sh beforeHelm", "upgrade ns/exec maxRows=<nil>", "hook ns.exec all.sh afterHelm"}
	if got := j.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}

	// Stopping the bindings ends the startup: the next start runs
	// onStartup again.
	off := gp("exec", "execsnoop", "")
	off.Spec.Enabled = new(bool)
	if err := runAll(t, m.Plan(off)); err != nil {
		t.Fatal(err)
	}
	if err := runAll(t, m.Plan(gp("exec", "execsnoop", ""))); err != nil {
		t.Fatal(err)
	}
	want = []string{"disable ns.exec", "hook ns.exec all.sh onStartup", "enable ns.exec", "hook ns.exec all.sh beforeHelm", "upgrade ns/exec maxRows=<nil>", "hook ns.exec all.sh afterHelm"}
	if got := j.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls after disable and enable = %v, want %v", got, want)
	}
}

// The chart's crds/ are created before any hook runs (onStartup, the
// bindings' Synchronization, beforeHelm), as Helm creates them before the
// templates, so that hooks can watch the package's own kinds.
func TestStartupCreatesCRDsBeforeHooks(t *testing.T) {
	m, j := setup(t, packagetest.Source{Name: "crontab", Hooks: map[string]string{"all.sh": allBindings},
		Files: map[string]string{"crds/crontab.yaml": packagetest.CronTabCRD}})
	if err := runAll(t, m.Plan(gp("ct", "crontab", ""))); err != nil {
		t.Fatal(err)
	}
	want := []string{"crds ns/ct crds/crontab.yaml", "hook ns.ct all.sh onStartup", "enable ns.ct", "hook ns.ct all.sh beforeHelm", "upgrade ns/ct maxRows=<nil>", "hook ns.ct all.sh afterHelm"}
	if got := j.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}
