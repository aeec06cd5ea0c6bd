package coordinator_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/gadgetpackage"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/dump"
)

// TestHookStatusFollowsScheduledRuns: a hook with a schedule binding that
// fires every second, and only succeeds, shows its runs in the
// GadgetPackage's status.hooks: lastRunTime and runs advance, never ahead
// of `gadgetpm dump` and never more than the documented interval (plus a
// reconcile) behind it.
func TestHookStatusFollowsScheduledRuns(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	const hook = "tick.sh"
	cfg := `{"configVersion":"v1","schedule":[{"name":"tick","crontab":"@every 1s"}]}`
	repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "ticking", Hooks: map[string]string{hook: recorder("ticking", journal, cfg, "")}})
	createRepo(t, "tick-"+ns, repoDir)
	op, _, _ := start(t)
	createPackage(t, ns, "ticking", "tick-"+ns)
	waitFor(t, ns, "ticking", "Running", running)
	key := ns + ".ticking"

	// The interval, plus a reconcile and the read of the status.
	bound := gadgetpackage.DefaultHookStatusInterval + 2*time.Second

	// Every version of the object seen: runs alone cause at most one
	// status write per interval.
	versions := map[string]bool{}
	since := time.Now()
	inStatus := func() v1alpha1.HookStatus {
		t.Helper()
		var gp v1alpha1.GadgetPackage
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ticking"}, &gp); err != nil {
			t.Fatal(err)
		}
		versions[gp.ResourceVersion] = true
		for _, h := range gp.Status.Hooks {
			if h.Name == hook {
				return h
			}
		}
		t.Fatalf("status.hooks %+v has no %s", gp.Status.Hooks, hook)
		return v1alpha1.HookStatus{}
	}
	inDump := func() dump.Hook {
		t.Helper()
		p, ok := op.Package(key)
		if !ok {
			t.Fatalf("the dump has no package %s", key)
		}
		for _, h := range p.Hooks {
			if h.Name == hook {
				return h
			}
		}
		t.Fatalf("the dump of %s has no hook %s: %+v", key, hook, p.Hooks)
		return dump.Hook{}
	}

	var first int64
	for round := 0; round < 3; round++ {
		// A run the status has not shown yet.
		seen := inStatus().Runs
		d := eventually.Value(t, 30*time.Second, fmt.Sprintf("round %d: a run of the hook the status has not shown (status runs %d)", round, seen), func() (dump.Hook, error) {
			d := inDump()
			if int64(d.Runs) <= seen || d.LastRun == nil {
				return d, fmt.Errorf("dump %+v", d)
			}
			return d, nil
		})
		// The status catches up with the dump within the bound.
		taken := time.Now()
		s := eventually.Value(t, bound, fmt.Sprintf("round %d: status.hooks[%s] to show the dump's runs %d, last run %v", round, hook, d.Runs, d.LastRun), func() (v1alpha1.HookStatus, error) {
			s := inStatus()
			if s.Runs < int64(d.Runs) || s.LastRunTime == nil || s.LastRunTime.Time.Before(d.LastRun.Truncate(time.Second)) {
				return s, fmt.Errorf("runs %d, lastRunTime %v, %s after the dump showed them", s.Runs, s.LastRunTime, time.Since(taken).Round(time.Millisecond))
			}
			return s, nil
		})
		if s.LastError != "" || s.Failures != 0 {
			t.Errorf("round %d: status.hooks[%s] = lastError %q, failures %d; the hook only succeeds", round, hook, s.LastError, s.Failures)
		}
		// Status is written from what the dump reads, never ahead of it.
		if now := inDump(); s.Runs > int64(now.Runs) {
			t.Errorf("round %d: status counts %d runs, the dump only %d", round, s.Runs, now.Runs)
		}
		if round == 0 {
			first = s.Runs
		} else if s.Runs <= first {
			t.Errorf("round %d: status runs %d did not advance from %d", round, s.Runs, first)
		}
	}
	elapsed := time.Since(since)
	runs := inDump().Runs
	if most := int(elapsed/gadgetpackage.DefaultHookStatusInterval) + 2; len(versions) > most {
		t.Errorf("%d versions of the GadgetPackage in %s for %d runs; want at most %d, one write per %s",
			len(versions), elapsed.Round(time.Millisecond), runs, most, gadgetpackage.DefaultHookStatusInterval)
	}
}
