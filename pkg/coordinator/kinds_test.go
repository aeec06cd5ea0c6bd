package coordinator_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// watchConfig is a hook config with one kubernetes binding.
func watchConfig(binding, apiVersion, kind string) string {
	return fmt.Sprintf(`{"configVersion":"v1","kubernetes":[{"name":%q,"apiVersion":%q,"kind":%q}]}`, binding, apiVersion, kind)
}

// waitForRuns polls the journal until cond holds for its runs.
func waitForRuns(t *testing.T, journal, what string, cond func([]run) bool) []run {
	t.Helper()
	return eventually.Value(t, 90*time.Second, what, func() ([]run, error) {
		runs := readJournal(t, journal)
		if cond(runs) {
			return runs, nil
		}
		return nil, fmt.Errorf("runs: %+v", runs)
	})
}

// added finds the first Event Added run of binding for an object named
// name; -1 when none.
func added(runs []run, binding, name string) int {
	for i, r := range runs {
		if r.binding != binding || r.typ != "Event" {
			continue
		}
		for _, c := range r.contexts {
			obj, _ := c["object"].(map[string]any)
			md, _ := obj["metadata"].(map[string]any)
			if c["watchEvent"] == "Added" && md["name"] == name {
				return i
			}
		}
	}
	return -1
}

func createObject(t *testing.T, apiVersion, kind, ns, name string) {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	if err := env.Client.Create(context.Background(), u); err != nil {
		t.Fatal(err)
	}
}

// deleteCRDAtEnd removes a CRD the test caused: gadgetpm, like Helm,
// never deletes CRDs.
func deleteCRDAtEnd(t *testing.T, name string) {
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
}

// waitForWarning polls until a Warning Event on the package, with reason
// (any when empty), whose message holds every one of parts exists.
func waitForWarning(t *testing.T, ns, name, reason string, parts ...string) corev1.Event {
	t.Helper()
	return env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Name: name, Type: corev1.EventTypeWarning, Reason: reason, Parts: parts})
}

// A package that ships the CRD its own hook watches: the chart's crds/ are
// created before the hooks start, as Helm creates them before templates,
// so the binding's Synchronization runs between onStartup and beforeHelm,
// the package reaches Running, and the hook sees CronTabs created
// afterwards.
func TestChartCRDWatchedByItsOwnHook(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	deleteCRDAtEnd(t, "crontabs.stable.example.com")
	repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "crontab",
		Files: map[string]string{"crds/crontab.yaml": packagetest.CronTabCRD},
		Hooks: map[string]string{"10-watch.sh": recorder("crontab", journal,
			`{"configVersion":"v1","onStartup":10,"beforeHelm":10,"kubernetes":[{"name":"crontabs","apiVersion":"stable.example.com/v1","kind":"CronTab"}]}`, "")},
	})
	createRepo(t, "crontab-"+ns, repoDir)
	op, _, _ := start(t)
	createPackage(t, ns, "crontab", "crontab-"+ns)
	waitFor(t, ns, "crontab", "Running", running)

	runs := readJournal(t, journal)
	var order []string
	for _, r := range runs {
		order = append(order, r.binding+" "+r.typ)
	}
	if want := "onStartup ,crontabs Synchronization,beforeHelm "; strings.Join(order, ",") != want {
		t.Fatalf("runs %q, want %q: the CRD served before the hooks start", order, want)
	}
	createObject(t, "stable.example.com/v1", "CronTab", ns, "nightly")
	runs = waitForRuns(t, journal, "Event Added for CronTab nightly", func(r []run) bool { return added(r, "crontabs", "nightly") >= 0 })
	if i := added(runs, "crontabs", "nightly"); i < 3 {
		t.Errorf("Added at run %d, want after the Synchronization", i)
	}
	p, _ := op.Package(ns + ".crontab")
	if len(p.Subscriptions) != 1 || !p.Subscriptions[0].Synced || p.Subscriptions[0].WaitingForKind != "" || p.Subscriptions[0].Kind != "CronTab" {
		t.Errorf("dump subscriptions %+v, want CronTab synced and not waiting", p.Subscriptions)
	}
}

// A binding on a kind that nobody serves yet does not stall its package:
// the package reaches Running, the wait is visible (dump, Event, log), and
// the binding starts — Synchronization, then Events — once someone else
// creates the CRD.
func TestBindingWaitsForAKindServedLater(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	group := ns + ".later.gadgetpm.test"
	deleteCRDAtEnd(t, "sprockets."+group)
	repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "later",
		Hooks: map[string]string{"10-watch.sh": recorder("later", journal, watchConfig("sprockets", group+"/v1", "Sprocket"), "")},
	})
	createRepo(t, "later-"+ns, repoDir)
	op, logs, _ := start(t)
	createPackage(t, ns, "later", "later-"+ns)
	waitFor(t, ns, "later", "Running", running)

	p, _ := op.Package(ns + ".later")
	if len(p.Subscriptions) != 1 || !strings.Contains(p.Subscriptions[0].WaitingForKind, "API group "+group+" is not served") {
		t.Errorf("dump subscriptions %+v, want the wait for the unserved group shown", p.Subscriptions)
	}
	waitForWarning(t, ns, "later", hookhost.ReasonKindNotServed, "hook 10-watch.sh binding sprockets", "Sprocket", group+"/v1", "is not served")
	if logs.Count("binding waits for its kind to be served", "10-watch.sh", "sprockets") == 0 {
		t.Errorf("no log line says the binding waits; logs:\n%s", strings.Join(logs.Get(), "\n"))
	}
	if runs := readJournal(t, journal); len(runs) != 0 {
		t.Fatalf("the hook ran before its kind was served: %+v", runs)
	}

	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal([]byte(packagetest.CRD(group, "Sprocket", "sprockets")), &crd); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(context.Background(), &crd); err != nil {
		t.Fatal(err)
	}
	waitForRuns(t, journal, "Synchronization of sprockets", func(r []run) bool { return index(r, "later", "sprockets") >= 0 })
	createObject(t, group+"/v1", "Sprocket", ns, "s1")
	runs := waitForRuns(t, journal, "Event Added for Sprocket s1", func(r []run) bool { return added(r, "sprockets", "s1") >= 0 })
	if runs[0].typ != "Synchronization" || added(runs, "sprockets", "s1") < 1 {
		t.Errorf("runs %+v, want Synchronization then Event Added", runs)
	}
	if p, _ := op.Package(ns + ".later"); p.Subscriptions[0].WaitingForKind != "" {
		t.Errorf("dump still says %q once the kind is served", p.Subscriptions[0].WaitingForKind)
	}
}

// A binding whose group is served but not at its version, or whose kind is
// misspelled in a served group version, is a mistake: its package stalls
// with the hook, binding, field and what is served; others run.
func TestMistakenKindsStallTheirPackage(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "oldversion", Hooks: map[string]string{"10-watch.sh": recorder("oldversion", journal, watchConfig("events", "events.k8s.io/v1beta1", "Event"), "")}},
		packagetest.Source{Name: "typo", Hooks: map[string]string{"10-watch.sh": recorder("typo", journal, watchConfig("cms", "v1", "ConfigMapz"), "")}},
		packagetest.Source{Name: "fine", Hooks: map[string]string{"10-lifecycle.sh": recorder("fine", journal, lifecycleConfig, "")}},
	)
	createRepo(t, "mistakes-"+ns, repoDir)
	start(t)
	for _, name := range []string{"oldversion", "typo", "fine"} {
		createPackage(t, ns, name, "mistakes-"+ns)
	}
	waitFor(t, ns, "fine", "Running", running)
	for name, want := range map[string][]string{
		"oldversion": {"10-watch.sh", `"events"`, "field apiVersion", "events.k8s.io/v1beta1 is not served; served versions of events.k8s.io: v1"},
		"typo":       {"10-watch.sh", `"cms"`, "field kind", `unknown kind "ConfigMapz" in v1`},
	} {
		gp := waitFor(t, ns, name, "Stalled", func(gp *v1alpha1.GadgetPackage) bool {
			c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
			return c != nil && c.Status == metav1.ConditionTrue
		})
		msg := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled).Message
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: Stalled message %q does not say %q", name, msg, w)
			}
		}
		waitForWarning(t, ns, name, "", want...)
	}
}
