package coordinator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
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
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/queue"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	testenv.Main(m, &env, testenv.OwnControlPlane()) // fault tests freeze the API server (PauseAPIServer)
}

var skipNameValidation = true

// start runs an operator in-process against the test API server until
// stop is called or the test ends.
func start(t *testing.T) (op *coordinator.Coordinator, logs *testlog.Lines, stop func()) {
	t.Helper()
	return startWith(t, nil)
}

// startWith is start with the coordinator's options changed by edit.
func startWith(t *testing.T, edit func(*coordinator.Options)) (op *coordinator.Coordinator, logs *testlog.Lines, stop func()) {
	t.Helper()
	logs = &testlog.Lines{}
	log := logs.Logger(0)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:      env.CacheOptions(cache.Options{}),
		Controller: config.Controller{SkipNameValidation: &skipNameValidation}})
	if err != nil {
		t.Fatal(err)
	}
	opts := coordinator.Options{
		Config: env.Config, Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), DataDir: t.TempDir(),
		Queue:       queue.Options{BackoffBase: 20 * time.Millisecond, BackoffCap: 100 * time.Millisecond},
		MaxAttempts: 2, StopGrace: 2 * time.Second, HelmTimeout: 30 * time.Second,
		Recorder: mgr.GetEventRecorderFor("gadgetpm"), //nolint:staticcheck // the services take client-go's recorder
		Logger:   log,
	}
	if edit != nil {
		edit(&opts)
	}
	op, err = coordinator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := op.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(60 * time.Second):
				t.Error("the operator did not stop within 60s")
			}
		})
	}
	t.Cleanup(stop)
	return op, logs, stop
}

// recorder is a hook that appends "<pkg> <binding contexts JSON>" to
// journal on every run, for the bindings in config.
func recorder(pkg, journal, config, extra string) string {
	return fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then
  cat <<'EOF'
%s
EOF
  exit 0
fi
printf '%%s %%s\n' %q "$(tr -d '\n' < "$BINDING_CONTEXT_PATH")" >> %q
%s
`, config, pkg, journal, extra)
}

const lifecycleConfig = `{"configVersion":"v1","onStartup":10,"beforeHelm":10,"afterHelm":10,"afterDeleteHelm":10}`

const openSchema = `{"type": "object"}`

type run struct {
	pkg      string
	binding  string
	typ      string
	contexts []map[string]any
}

func readJournal(t *testing.T, path string) []run {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []run
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		pkg, js, _ := strings.Cut(sc.Text(), " ")
		var ctxs []map[string]any
		if err := json.Unmarshal([]byte(js), &ctxs); err != nil {
			t.Fatalf("journal line %q: %v", sc.Text(), err)
		}
		r := run{pkg: pkg, contexts: ctxs}
		if len(ctxs) > 0 {
			r.binding, _ = ctxs[0]["binding"].(string)
			r.typ, _ = ctxs[0]["type"].(string)
		}
		out = append(out, r)
	}
	return out
}

func createRepo(t *testing.T, name, dir string) {
	t.Helper()
	pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.PackageRepositorySpec{URL: "file://" + dir, Interval: metav1.Duration{Duration: time.Minute}}}
	if err := env.Client.Create(context.Background(), pr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
}

func createPackage(t *testing.T, ns, name, repository string) {
	t.Helper()
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.GadgetPackageSpec{Repository: repository, Package: name, Version: "*"}}
	if err := env.Client.Create(context.Background(), gp); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls the GadgetPackage until cond holds.
func waitFor(t *testing.T, ns, name, what string, cond func(*v1alpha1.GadgetPackage) bool) *v1alpha1.GadgetPackage {
	t.Helper()
	return env.WaitPackage(t, ns, name, what, cond)
}

func running(gp *v1alpha1.GadgetPackage) bool {
	c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady)
	return gp.Status.Phase == v1alpha1.PhaseRunning && c != nil && c.Status == metav1.ConditionTrue
}

func waitGone(t *testing.T, ns, name string) {
	t.Helper()
	eventually.NoError(t, 90*time.Second, fmt.Sprintf("%s/%s to be deleted", ns, name), func() error {
		var gp v1alpha1.GadgetPackage
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("status %+v (err %v)", gp.Status, err)
	})
}

// index of the first run matching pkg and binding, -1 when none.
func index(runs []run, pkg, binding string) int {
	for i, r := range runs {
		if r.pkg == pkg && r.binding == binding {
			return i
		}
	}
	return -1
}

func TestDependencyOrderHooksAndTeardown(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	label := "gadgetpm-test-" + ns
	watch := fmt.Sprintf(`{"configVersion":"v1",
 "kubernetes":[{"name":"configs","kind":"ConfigMap","namespace":{"nameSelector":{"matchNames":[%q]}},
   "labelSelector":{"matchLabels":{"watched":%q}},"jqFilter":".data"}],
 "schedule":[{"name":"tick","crontab":"@every 1s"}]}`, ns, label)
	afterHelm := `{"configVersion":"v1","afterHelm":20}`
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "a", Schema: openSchema, Hooks: map[string]string{
			"10-lifecycle.sh": recorder("a", journal, lifecycleConfig, ""),
			"20-watch.sh":     recorder("a", journal, watch, ""),
			// afterHelm patches values: the chart gets them at once.
			"30-patch.sh": recorder("a", journal, afterHelm, `printf '[{"op":"add","path":"/a/fromAfterHelm","value":"yes"}]' > "$VALUES_JSON_PATCH_PATH"`),
		}, Files: map[string]string{
			"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  fromAfterHelm: {{ .Values.fromAfterHelm | default \"no\" | quote }}\n",
		}},
		packagetest.Source{Name: "b", Requires: "a >=1.0", Hooks: map[string]string{"10-lifecycle.sh": recorder("b", journal, lifecycleConfig, "")}},
		packagetest.Source{Name: "c", Requires: "b >=1.0", Hooks: map[string]string{"10-lifecycle.sh": recorder("c", journal, lifecycleConfig, "")}},
		packagetest.Source{Name: "broken", Hooks: map[string]string{"10-fail.sh": recorder("broken", journal, `{"configVersion":"v1","onStartup":1}`, `echo "cannot start: no such device" >&2; exit 3`)}},
	)
	createRepo(t, "e2e-"+ns, repoDir)
	op, logs, stop := start(t)

	// Created dependents first: the order must come from requirements.
	for _, name := range []string{"c", "broken", "b", "a"} {
		createPackage(t, ns, name, "e2e-"+ns)
	}
	for _, name := range []string{"a", "b", "c"} {
		waitFor(t, ns, name, "Running", running)
	}

	// The broken package is Stalled with the hook's words; it stalls
	// nothing else.
	gp := waitFor(t, ns, "broken", "Stalled", func(gp *v1alpha1.GadgetPackage) bool {
		c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	stalled := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
	for _, want := range []string{"10-fail.sh", "cannot start: no such device", "exit"} {
		if !strings.Contains(stalled.Message, want) {
			t.Errorf("Stalled message %q does not say %q", stalled.Message, want)
		}
	}

	runs := readJournal(t, journal)
	// Per package: onStartup → Synchronization → beforeHelm → afterHelm;
	// a dependency's afterHelm before its dependent's onStartup.
	order := []struct{ pkg, binding string }{
		{"a", "onStartup"}, {"a", "configs"}, {"a", "beforeHelm"}, {"a", "afterHelm"},
		{"b", "onStartup"}, {"b", "beforeHelm"}, {"b", "afterHelm"},
		{"c", "onStartup"}, {"c", "beforeHelm"}, {"c", "afterHelm"},
	}
	last := -1
	for _, o := range order {
		i := index(runs, o.pkg, o.binding)
		if i < 0 {
			t.Fatalf("no %s run of %s in the journal: %+v", o.binding, o.pkg, runs)
		}
		if i < last {
			t.Errorf("%s %s ran at %d, before the step listed ahead of it (at %d)", o.pkg, o.binding, i, last)
		}
		last = i
	}
	for _, pkg := range []string{"a", "b", "c"} {
		n := 0
		for _, r := range runs {
			if r.pkg == pkg && r.binding == "onStartup" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s's onStartup ran %d times, want once", pkg, n)
		}
	}
	if i := index(runs, "a", "configs"); runs[i].typ != "Synchronization" {
		t.Errorf("first kubernetes run of a is %q, want Synchronization", runs[i].typ)
	}

	// afterHelm's values patch made a second upgrade.
	var cm corev1.ConfigMap
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "a-settings"}, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["fromAfterHelm"] != "yes" {
		t.Errorf("chart rendered fromAfterHelm=%q, want the afterHelm patch's \"yes\"", cm.Data["fromAfterHelm"])
	}
	if gp := waitFor(t, ns, "a", "Running", running); gp.Status.HelmRevision != 2 {
		t.Errorf("a's Helm revision = %d, want 2 (install, then the afterHelm values)", gp.Status.HelmRevision)
	}

	// A watched object changes: an Event run with the jqFilter's result.
	watched := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watched", Labels: map[string]string{"watched": label}},
		Data: map[string]string{"k": "v"}}
	if err := env.Client.Create(context.Background(), watched); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "an Event run with filterResult {k: v}", func() bool {
		for _, r := range readJournal(t, journal) {
			if r.pkg == "a" && r.binding == "configs" && r.typ == "Event" {
				for _, c := range r.contexts {
					if fr, ok := c["filterResult"].(map[string]any); ok && fr["k"] == "v" {
						return true
					}
				}
			}
		}
		return false
	})
	// The schedule fires every second.
	eventually.True(t, 10*time.Second, "the @every 1s schedule to run", func() bool { return index(readJournal(t, journal), "a", "tick") >= 0 })

	// The dump is YAML holding packages, hooks, values, queues and
	// subscriptions.
	out, err := yaml.Marshal(op.Dump())
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("dump is not valid YAML: %v", err)
	}
	pa, ok := op.Package(ns + ".a")
	if !ok || pa.Phase != "Running" || !pa.Enabled || pa.Version != "1.0.0" || len(pa.Digest) != 64 {
		t.Errorf("dump of a = %+v", pa)
	}
	if pa.Values["fromAfterHelm"] != "yes" {
		t.Errorf("dump values of a = %v, want the afterHelm patch", pa.Values)
	}
	if len(pa.Hooks) != 3 || pa.Hooks[1].Name != "20-watch.sh" || pa.Hooks[1].Runs == 0 || pa.Hooks[1].LastRun == nil {
		t.Errorf("dump hooks of a = %+v", pa.Hooks)
	}
	if len(pa.Subscriptions) != 1 || pa.Subscriptions[0].Kind != "ConfigMap" || !pa.Subscriptions[0].Synced || pa.Subscriptions[0].Objects != 1 {
		t.Errorf("dump subscriptions of a = %+v", pa.Subscriptions)
	}
	if pb, _ := op.Package(ns + ".broken"); pb.Hooks[0].LastError == "" {
		t.Errorf("dump of broken has no last error: %+v", pb.Hooks)
	}
	snaps, ok := op.HookSnapshots(ns+".a", "20-watch.sh")
	if !ok || len(snaps["configs"]) != 1 {
		t.Errorf("snapshots of a's watch hook = %v", snaps)
	}
	for _, want := range []string{"packages:", "hooks:", "queues:", "subscriptions:", "schedules:", ns + ".a"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dump lacks %q", want)
		}
	}

	// Disabling a disables its dependents first (their Ready says why);
	// enabling it again starts a, b, c in order.
	setEnabled(t, ns, "a", false)
	for _, name := range []string{"c", "b"} {
		gp := waitFor(t, ns, name, "disabled", func(gp *v1alpha1.GadgetPackage) bool {
			return !gp.Status.Enabled && gp.Status.Phase == v1alpha1.PhaseLoaded
		})
		if !strings.Contains(gp.Status.Reason, "requires") {
			t.Errorf("%s disabled with reason %q, want one naming its requirement", name, gp.Status.Reason)
		}
	}
	waitFor(t, ns, "a", "disabled", func(gp *v1alpha1.GadgetPackage) bool {
		return !gp.Status.Enabled && gp.Status.Phase == v1alpha1.PhaseLoaded
	})
	mark := len(readJournal(t, journal))
	setEnabled(t, ns, "a", true)
	for _, name := range []string{"a", "b", "c"} {
		waitFor(t, ns, name, "Running again", running)
	}
	again := readJournal(t, journal)[mark:]
	ia2, ib2, ic2 := index(again, "a", "onStartup"), index(again, "b", "onStartup"), index(again, "c", "onStartup")
	if ia2 < 0 || ib2 < 0 || ic2 < 0 || ia2 > ib2 || ib2 > ic2 {
		t.Errorf("restart order a=%d b=%d c=%d, want a, b, c", ia2, ib2, ic2)
	}

	// A spec change re-arms the Stalled package: it tries again.
	before := countRuns(readJournal(t, journal), "broken")
	var broken v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "broken"}, &broken); err != nil {
		t.Fatal(err)
	}
	broken.Spec.Settings = &apiextensionsv1.JSON{Raw: []byte(`{"maxRows": 3}`)}
	if err := env.Client.Update(context.Background(), &broken); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 30*time.Second, "the spec change to re-arm the Stalled package", func() error {
		if n := countRuns(readJournal(t, journal), "broken"); n <= before {
			return fmt.Errorf("broken's hooks ran %d times, as before the change", n)
		}
		return nil
	})

	// Removing everything tears down c, b, a: afterDeleteHelm after each
	// release is gone.
	for _, name := range []string{"a", "b", "c", "broken"} {
		if err := env.Client.Delete(context.Background(), &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a", "b", "c", "broken"} {
		waitGone(t, ns, name)
	}
	runs = readJournal(t, journal)
	ic, ib, ia := index(runs, "c", "afterDeleteHelm"), index(runs, "b", "afterDeleteHelm"), index(runs, "a", "afterDeleteHelm")
	if ic < 0 || ib < 0 || ia < 0 || ic > ib || ib > ia {
		t.Errorf("afterDeleteHelm order c=%d b=%d a=%d, want c, b, a", ic, ib, ia)
	}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "a-settings"}, &cm); !apierrors.IsNotFound(err) {
		t.Errorf("a's release objects outlived it: %v", err)
	}

	// Stop runs in the documented order.
	stop()
	var stopped []string
	for _, l := range logs.Get() {
		if strings.Contains(l, `"msg"="stopped"`) {
			_, s, _ := strings.Cut(l, `"service"="`)
			s, _, _ = strings.Cut(s, `"`)
			stopped = append(stopped, s)
		}
	}
	want := []string{"helm-monitors", "kube-event-handling", "cron", "event-handler", "queues", "kube-monitors"}
	if strings.Join(stopped, ",") != strings.Join(want, ",") {
		t.Errorf("stop order = %v, want %v", stopped, want)
	}
	if err := op.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func setEnabled(t *testing.T, ns, name string, on bool) {
	t.Helper()
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp); err != nil {
		t.Fatal(err)
	}
	// A merge patch, as kubectl patch sends: the operator writes the
	// package's status and metadata meanwhile, so an Update could conflict.
	base := gp.DeepCopy()
	gp.Spec.Enabled = &on
	if err := env.Client.Patch(context.Background(), &gp, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
}

func countRuns(runs []run, pkg string) int {
	n := 0
	for _, r := range runs {
		if r.pkg == pkg {
			n++
		}
	}
	return n
}

func TestBadBindingsStallOnlyTheirPackage(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	badKind := `{"configVersion":"v1","kubernetes":[{"name":"things","kind":"NoSuchKind"}]}`
	badJq := `{"configVersion":"v1","kubernetes":[{"name":"cms","kind":"ConfigMap","jqFilter":".data | ]"}]}`
	syncQueue := `{"configVersion":"v1","schedule":[{"name":"tick","crontab":"@every 1m","queue":"synchronization"}]}`
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "badkind", Hooks: map[string]string{"10-watch.sh": recorder("badkind", journal, badKind, "")}},
		packagetest.Source{Name: "badjq", Hooks: map[string]string{"10-watch.sh": recorder("badjq", journal, badJq, "")}},
		packagetest.Source{Name: "syncqueue", Hooks: map[string]string{"10-tick.sh": recorder("syncqueue", journal, syncQueue, "")}},
		packagetest.Source{Name: "fine", Hooks: map[string]string{"10-lifecycle.sh": recorder("fine", journal, lifecycleConfig, "")}},
	)
	createRepo(t, "bad-"+ns, repoDir)
	_, logs, _ := start(t)
	for _, name := range []string{"badkind", "badjq", "syncqueue", "fine"} {
		createPackage(t, ns, name, "bad-"+ns)
	}
	waitFor(t, ns, "fine", "Running", running)
	for name, want := range map[string][]string{
		"badkind":   {"10-watch.sh", "things", "kind", "NoSuchKind"},
		"badjq":     {"10-watch.sh", "cms", "jqFilter"},
		"syncqueue": {"10-tick.sh", "tick", "queue", `"synchronization" is reserved`},
	} {
		gp := waitFor(t, ns, name, "Stalled", func(gp *v1alpha1.GadgetPackage) bool {
			c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
			return c != nil && c.Status == metav1.ConditionTrue
		})
		msg := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled).Message
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: Stalled message %q does not name %q", name, msg, w)
			}
		}
		var events corev1.EventList
		if err := env.Client.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range events.Items {
			if e.InvolvedObject.Name == name && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, want[0]) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no Warning Event naming %s", name, want[0])
		}
		// One per Load given up on; a re-armed Load that fails again
		// adds its own.
		if lines := errorLines(logs, `"package"="`+ns+"."+name+`"`, want[0], want[1]); len(lines) == 0 {
			t.Errorf("%s: no error line in the operator log naming %s and %s", name, want[0], want[1])
		}
	}
}
