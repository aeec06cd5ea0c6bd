package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// gatedHook is a beforeHelm hook driven by files in dir: its first run
// fails with "disk on fire" on stderr; a later run, while "hang" exists,
// notes "started" in "journal" and waits (at most a minute), then
// succeeds.
func gatedHook(dir string) string {
	return fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then
  echo '{"configVersion":"v1","beforeHelm":10}'
  exit 0
fi
n=$(cat %[1]q/count 2>/dev/null || echo 0)
n=$((n+1))
echo $n > %[1]q/count
if [ $n -eq 1 ]; then
  echo "disk on fire" >&2
  exit 1
fi
if [ -e %[1]q/hang ]; then
  echo started >> %[1]q/journal
  i=0; while [ -e %[1]q/hang ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
fi
`, dir)
}

// packageEvents lists the Events recorded on the GadgetPackage ns/name.
func packageEvents(t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	var list corev1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind == "GadgetPackage" && ev.InvolvedObject.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits until an Event on ns/name of type typ says want.
func waitEvent(t *testing.T, ns, name, typ, want string) {
	t.Helper()
	env.WaitEvent(t, 90*time.Second, testenv.EventMatch{Namespace: ns, Kind: "GadgetPackage", Name: name, Type: typ, Parts: []string{want}})
}

func eventLines(evs []corev1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n  %s %s: %s", ev.Type, ev.Reason, ev.Message)
	}
	return b.String()
}

// cancelNoise are the words of a cancellation reported as a failure (the
// test's namespace has "cancelled" in its name).
var cancelNoise = []string{"context canceled", ": cancelled"}

// noCancelNoise fails the test for every Event on ns/name that reports a
// cancellation.
func noCancelNoise(t *testing.T, ns, name string) {
	t.Helper()
	for _, ev := range packageEvents(t, ns, name) {
		for _, w := range cancelNoise {
			if strings.Contains(ev.Message, w) {
				t.Errorf("Event %s %s on %s/%s reports the operator's own cancellation: %s", ev.Type, ev.Reason, ns, name, ev.Message)
				break
			}
		}
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	eventually.NoError(t, 90*time.Second, path+" to appear", func() error {
		_, err := os.Stat(path)
		return err
	})
}

func hookError(gp *v1alpha1.GadgetPackage, hook string) string {
	for _, h := range gp.Status.Hooks {
		if h.Name == hook {
			return h.LastError
		}
	}
	return ""
}

// TestCancellationAfterARealErrorIsNoFailure: a package's beforeHelm
// hook fails for real, and its retry hangs; the package is disabled
// meanwhile, which cancels the retry. The cancellation is not reported: no
// Event, no Stalled condition and no status speaks of it, and status keeps
// the real error. The same holds when the operator stops while the hook
// runs.
func TestCancellationAfterARealErrorIsNoFailure(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	const hook = "gate.sh"
	hang, journal := filepath.Join(dir, "hang"), filepath.Join(dir, "journal")
	// Release a hook still waiting when the test ends.
	t.Cleanup(func() { _ = os.Remove(hang) })
	repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "flaky", Schema: openSchema, Hooks: map[string]string{hook: gatedHook(dir)}})
	createRepo(t, "noise-"+ns, repoDir)
	_, logs, stop := start(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range logs.Get() {
				t.Log(l)
			}
		}
	})

	// 1. The first run fails for real: status says so at once. The retry
	// hangs.
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	createPackage(t, ns, "flaky", "noise-"+ns)
	waitFor(t, ns, "flaky", "showing the hook's error", func(gp *v1alpha1.GadgetPackage) bool {
		return strings.Contains(hookError(gp, hook), "disk on fire")
	})
	waitFile(t, journal)

	// 2. Disabled, the package's running task is cancelled, and nothing
	// runs after it: status keeps the real error, and the package is
	// disabled, not Stalled.
	setEnabled(t, ns, "flaky", false)
	gp := waitFor(t, ns, "flaky", "disabled", func(gp *v1alpha1.GadgetPackage) bool {
		c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady)
		return gp.Status.ObservedGeneration == gp.Generation && c != nil && c.Reason == v1alpha1.ReasonDisabled
	})
	if msg := hookError(gp, hook); !strings.Contains(msg, "disk on fire") {
		t.Errorf("status.hooks[%s].lastError = %q after the retry was cancelled; want the real error", hook, msg)
	}
	if isStalled(gp) {
		t.Errorf("the cancelled retry stalled the package: %+v", gp.Status.Conditions)
	}
	for _, c := range gp.Status.Conditions {
		for _, w := range cancelNoise {
			if strings.Contains(c.Message, w) {
				t.Errorf("condition %s says %q", c.Type, c.Message)
			}
		}
	}
	// Enabled again, it runs. Events are recorded in order: once the
	// running one is there, any about the cancellation before it would be
	// too.
	if err := os.Remove(hang); err != nil {
		t.Fatal(err)
	}
	setEnabled(t, ns, "flaky", true)
	waitFor(t, ns, "flaky", "Running", running)
	waitEvent(t, ns, "flaky", corev1.EventTypeNormal, "is running")
	noCancelNoise(t, ns, "flaky")
	// The operator's log has it at debug level at most.
	for _, w := range cancelNoise {
		if n := logs.Count(w); n > 0 {
			t.Errorf("%d line(s) of the operator's log above debug level say %q", n, w)
		}
	}

	// 3. A settings change runs the hook again, it hangs, and the operator
	// stops: the stop cancels it. A new operator takes over and runs the
	// package.
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(journal); err != nil {
		t.Fatal(err)
	}
	setSettings(t, ns, "flaky", `{"round": 2}`)
	waitFile(t, journal)
	stop()
	if err := os.Remove(hang); err != nil {
		t.Fatal(err)
	}
	start(t)
	gp = waitFor(t, ns, "flaky", "Running with the new settings", func(gp *v1alpha1.GadgetPackage) bool {
		return running(gp) && gp.Status.ObservedGeneration == gp.Generation && len(gp.Status.Hooks) == 1 && gp.Status.Hooks[0].Runs > 0
	})
	if msg := hookError(gp, hook); msg != "" {
		t.Errorf("status.hooks[%s].lastError = %q after a success", hook, msg)
	}
	noCancelNoise(t, ns, "flaky")
}

// setSettings replaces spec.settings of ns/name.
func setSettings(t *testing.T, ns, name, settings string) {
	t.Helper()
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(gp.DeepCopy())
	gp.Spec.Settings = &apiextensionsv1.JSON{Raw: []byte(settings)}
	if err := env.Client.Patch(context.Background(), &gp, patch); err != nil {
		t.Fatal(err)
	}
}

// TestCancelledReleaseAfterARealErrorIsNoFailure: a package whose Helm
// release fails for real (the API server refuses its object) is Stalled
// with that error in a Warning Event; tasks of the failed plan that the
// controller cancels, then a spec change and a removal, add no Event
// about the cancellation.
func TestCancelledReleaseAfterARealErrorIsNoFailure(t *testing.T) {
	ns := env.Namespace(t)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.cmName }}\ndata:\n  a: b\n"
	repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "badchart", Schema: openSchema,
		Values: "cmName: Bad_One\n", Files: map[string]string{"templates/cm.yaml": cm}})
	createRepo(t, "badchart-"+ns, repoDir)
	_, logs, _ := start(t)

	createPackage(t, ns, "badchart", "badchart-"+ns)
	waitFor(t, ns, "badchart", "Stalled", isStalled)
	waitEvent(t, ns, "badchart", corev1.EventTypeWarning, `"Bad_One" is invalid`)

	// A spec change re-plans; the new plan fails for real again.
	setSettings(t, ns, "badchart", `{"cmName": "Bad_Two"}`)
	waitFor(t, ns, "badchart", "Stalled again", func(gp *v1alpha1.GadgetPackage) bool {
		c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
		return isStalled(gp) && c.ObservedGeneration == gp.Generation && strings.Contains(c.Message, "Bad_Two")
	})
	waitEvent(t, ns, "badchart", corev1.EventTypeWarning, `"Bad_Two" is invalid`)

	// Removed, it goes; the removal's Events come after the failures'.
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "badchart"}, &gp); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(context.Background(), &gp); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "badchart")
	noCancelNoise(t, ns, "badchart")
	for _, w := range cancelNoise {
		if n := logs.Count(w); n > 0 {
			t.Errorf("%d line(s) of the operator's log above debug level say %q", n, w)
		}
	}
}
