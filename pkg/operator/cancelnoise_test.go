package operator_test

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

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// gatedHook is a beforeHelm hook driven by files in dir: while "hang"
// exists it notes "started" in "journal" and waits (at most a minute);
// while "fail" exists it fails with that file's text on stderr.
func gatedHook(dir string) string {
	return fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--config" ]; then
  echo '{"configVersion":"v1","beforeHelm":10}'
  exit 0
fi
if [ -e %[1]q/hang ]; then
  echo started >> %[1]q/journal
  i=0; while [ -e %[1]q/hang ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
fi
if [ -e %[1]q/fail ]; then
  cat %[1]q/fail >&2
  exit 1
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
	deadline := time.Now().Add(90 * time.Second)
	for {
		for _, ev := range packageEvents(t, ns, name) {
			if ev.Type == typ && strings.Contains(ev.Message, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s Event on %s/%s saying %q within 90s: %s", typ, ns, name, want, eventLines(packageEvents(t, ns, name)))
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within 90s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hookError(gp *v1alpha1.GadgetPackage, hook string) string {
	for _, h := range gp.Status.Hooks {
		if h.Name == hook {
			return h.LastError
		}
	}
	return ""
}

// TestCancellationAfterARealErrorIsNoFailure: a package whose hook failed
// for real (Stalled, with a Warning Event) is retried; while the retry's
// hook runs, the spec changes, which cancels it. The cancellation is not
// reported: no Event and no status speaks of it, and status keeps the real
// error. The same holds when the operator stops while the hook runs.
func TestCancellationAfterARealErrorIsNoFailure(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	const hook = "gate.sh"
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(name string) {
		t.Helper()
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	// Release a hook still waiting when the test ends.
	t.Cleanup(func() { _ = os.Remove(filepath.Join(dir, "hang")) })
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

	// 1. The hook fails for real: Stalled, with the error in status and in
	// a Warning Event.
	write("fail", "disk on fire")
	createPackage(t, ns, "flaky", "noise-"+ns)
	gp := waitFor(t, ns, "flaky", "Stalled", isStalled)
	if msg := hookError(gp, hook); !strings.Contains(msg, "disk on fire") {
		t.Fatalf("status.hooks[%s].lastError = %q; want the real error", hook, msg)
	}
	waitEvent(t, ns, "flaky", corev1.EventTypeWarning, "disk on fire")

	// 2. Retried, the hook hangs; the spec changes meanwhile, which
	// cancels the running hook and plans again. The new plan's hook fails
	// for real, with new words.
	write("hang", "")
	retry(t, ns, "flaky", "1")
	waitFile(t, filepath.Join(dir, "journal"))
	write("fail", "disk still on fire")
	setSettings(t, ns, "flaky", `{"round": 2}`)
	remove("hang")
	gp = waitFor(t, ns, "flaky", "Stalled again", func(gp *v1alpha1.GadgetPackage) bool {
		c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionStalled)
		return isStalled(gp) && c.ObservedGeneration == gp.Generation && strings.Contains(c.Message, "disk still on fire")
	})
	// Events are recorded in order: once the second failure's is there,
	// any about the cancellation before it would be too.
	waitEvent(t, ns, "flaky", corev1.EventTypeWarning, "disk still on fire")
	noCancelNoise(t, ns, "flaky")
	if msg := hookError(gp, hook); !strings.Contains(msg, "disk still on fire") {
		t.Errorf("status.hooks[%s].lastError = %q; want the real error", hook, msg)
	}
	for _, c := range gp.Status.Conditions {
		for _, w := range cancelNoise {
			if strings.Contains(c.Message, w) {
				t.Errorf("condition %s says %q", c.Type, c.Message)
			}
		}
	}

	// 3. Retried again, the hook hangs, and the operator stops: the run is
	// cancelled by the stop. A new operator takes over; the hook then
	// succeeds.
	write("hang", "")
	remove("journal")
	retry(t, ns, "flaky", "2")
	waitFile(t, filepath.Join(dir, "journal"))
	stop()
	remove("hang")
	remove("fail")
	start(t)
	gp = waitFor(t, ns, "flaky", "Running", running)
	if msg := hookError(gp, hook); msg != "" {
		t.Errorf("status.hooks[%s].lastError = %q after a success", hook, msg)
	}
	waitEvent(t, ns, "flaky", corev1.EventTypeNormal, "is running")
	noCancelNoise(t, ns, "flaky")
}

// retry sets the retry annotation of ns/name to value.
func retry(t *testing.T, ns, name, value string) {
	t.Helper()
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(gp.DeepCopy())
	if gp.Annotations == nil {
		gp.Annotations = map[string]string{}
	}
	gp.Annotations[v1alpha1.RetryAnnotation] = value
	if err := env.Client.Patch(context.Background(), &gp, patch); err != nil {
		t.Fatal(err)
	}
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
	start(t)

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
}
