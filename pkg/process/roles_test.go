package process_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/noderole/noderoletest"
	"github.com/gadgetpm/gadgetpm/pkg/process"
)

// holdLease makes holder the Lease's holder in ns, renewed at renewed
// for duration.
func holdLease(t *testing.T, ns, holder string, renewed time.Time, duration time.Duration) {
	t.Helper()
	ctx := context.Background()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: process.LeaderElectionID}}
	err := env.Client.Get(ctx, client.ObjectKeyFromObject(l), l)
	if err != nil && client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	at := metav1.NewMicroTime(renewed)
	secs := int32(duration / time.Second)
	l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &at, RenewTime: &at}
	if err != nil {
		err = env.Client.Create(ctx, l)
	} else {
		err = env.Client.Update(ctx, l)
	}
	if err != nil {
		t.Fatalf("hold the Lease as %s: %v", holder, err)
	}
}

// leaseHolder is the Lease's holder in ns, "" when there is none.
func leaseHolder(ns string) (string, error) {
	l := &coordinationv1.Lease{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: process.LeaderElectionID}, l); err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

// options are those of a process in ns: nothing listens on a port, the
// Lease lives in ns, elections are quick.
func options(t *testing.T, ns string, role process.Role) process.Options {
	return process.Options{
		Role: role, Namespaces: []string{ns}, WatchLabelSelector: env.WatchLabelSelector(), DataDir: t.TempDir(), NodeName: "node-a",
		DebugSocket: "-", MetricsAddr: "0", ProbeAddr: "0", StopGrace: 2 * time.Second,
		LeaderElection: true, LeaderElectionNamespace: ns,
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond,
		Registerer: prometheus.NewRegistry(),
	}
}

// logTo makes opts log into the returned lines, printed if the test
// fails.
func logTo(t *testing.T, opts *process.Options) *testlog.Lines {
	var logs testlog.Lines
	opts.Logger = logs.Logger(0)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(strings.Join(logs.Get(), "\n"))
		}
	})
	return &logs
}

// proc is a process.Run running in the test.
type proc struct {
	cancel context.CancelFunc
	done   chan error // closed once Run's result is in err
	err    error
	seen   bool // the test read the result
}

// start runs process.Run until stop is called or the test ends.
func start(t *testing.T, opts process.Options) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- process.Run(ctx, env.Config, opts) }()
	t.Cleanup(func() {
		if err := p.stop(); err != nil && !p.seen {
			t.Errorf("process: %v", err)
		}
	})
	return p
}

// wait returns Run's result once it returned by itself within timeout;
// ok is false when it still runs.
func (p *proc) wait(timeout time.Duration) (err error, ok bool) {
	select {
	case p.err = <-p.done:
		close(p.done)
		p.seen = true
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// stop cancels Run's context and returns its result.
func (p *proc) stop() error {
	p.cancel()
	select {
	case err, open := <-p.done:
		if open {
			p.err = err
			close(p.done)
		}
		return p.err
	case <-time.After(30 * time.Second):
		return errors.New("the process did not stop within 30s")
	}
}

// The node role runs a node's Traces while another process holds the
// cluster role's Lease: a Trace of this node gets its answer from this
// node (here: that its gadget names no package), not silence.
func TestNodeRoleRunsWithoutTheLease(t *testing.T) {
	for _, role := range []process.Role{process.RoleNode, process.RoleAll} {
		t.Run(string(role), func(t *testing.T) {
			ns := env.Namespace(t)
			holdLease(t, ns, "another-replica", time.Now(), time.Hour)
			opts := options(t, ns, role)
			logTo(t, &opts)
			start(t, opts)
			noderoletest.RequireAnswer(t, env.Client, ns, "node-a")
			if h, err := leaseHolder(ns); err != nil || h != "another-replica" {
				t.Errorf("Lease holder %q (%v): the node role must not touch the Lease", h, err)
			}
		})
	}
}

// --role takes all, cluster or node; the node roles need the node name,
// the cluster role does not.
func TestRunChecksRoleAndNodeName(t *testing.T) {
	for _, tc := range []struct {
		role     process.Role
		nodeName string
		want     []string
	}{
		{"both", "n", []string{`--role "both"`, "all, cluster, node"}},
		{process.RoleNode, "", []string{"--role=node", "--node-name", "NODE_NAME"}},
		{process.RoleAll, "", []string{"--role=all", "--node-name", "NODE_NAME"}},
	} {
		t.Run(string(tc.role)+"/"+tc.nodeName, func(t *testing.T) {
			opts := process.Options{Role: tc.role, NodeName: tc.nodeName}
			err := process.Run(context.Background(), env.Config, opts)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Run: %v, want an error naming %s", err, w)
				}
			}
		})
	}
}

// The cluster role without a node name runs, takes the Lease and gives
// it back on stop.
func TestClusterRoleTakesAndReleasesTheLease(t *testing.T) {
	ns := env.Namespace(t)
	opts := options(t, ns, process.RoleCluster)
	opts.NodeName = ""
	logs := logTo(t, &opts)
	p := start(t, opts)
	eventually.NoError(t, 30*time.Second, "the cluster role to hold the Lease", func() error {
		if h, err := leaseHolder(ns); err != nil || h == "" {
			return fmt.Errorf("holder %q: %v", h, err)
		}
		return nil
	})
	eventually.True(t, 30*time.Second, "the coordinator to start", func() bool { return logs.Count("coordinator started") == 1 })
	if err := p.stop(); err != nil {
		t.Fatalf("Run after stop: %v", err)
	}
	if h, err := leaseHolder(ns); err != nil || h != "" {
		t.Errorf("Lease holder after stop %q (%v), want it released", h, err)
	}
	// funcr writes a "level" on Info lines only
	for _, l := range logs.Get() {
		if !strings.Contains(l, `"level"=`) {
			t.Errorf("a clean stop logged an error: %s", l)
		}
	}
}

// Without leader election the cluster role refuses to start while
// another process holds the Lease and renewed it within its duration; an
// expired or released Lease does not stop it.
func TestUnelectedClusterRoleRefusesAHeldLease(t *testing.T) {
	for _, tc := range []struct {
		name    string
		holder  string
		renewed time.Time
		refused bool
	}{
		{"held", "other-operator_1234", time.Now(), true},
		{"expired", "other-operator_1234", time.Now().Add(-2 * time.Minute), false},
		{"released", "", time.Now(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			holdLease(t, ns, tc.holder, tc.renewed, time.Minute)
			for _, role := range []process.Role{process.RoleCluster, process.RoleAll} {
				opts := options(t, ns, role)
				opts.LeaderElection = false
				p := start(t, opts)
				err, returned := p.wait(2 * time.Second)
				if !tc.refused {
					if returned {
						t.Fatalf("role %s: Run returned at once: %v", role, err)
					}
					if err := p.stop(); err != nil {
						t.Errorf("role %s: Run after stop: %v", role, err)
					}
					continue
				}
				if !returned {
					t.Fatalf("role %s: Run did not refuse to start", role)
				}
				for _, want := range []string{"Lease " + ns + "/" + process.LeaderElectionID, `held by "other-operator_1234"`, "--leader-elect"} {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("role %s: Run: %v, want an error naming %s", role, err, want)
					}
				}
			}
		})
	}
}

// A cluster role whose Lease is taken over stops in order (the
// coordinator's services, the queues: a running hook is killed), logs one
// error saying so and returns ErrLeaseLost, so that the process exits
// non-zero; the node role of the same process stops with it.
func TestLosingTheLeaseStopsTheClusterRoleInOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		hook bool // a package's startup hook runs until it is killed
	}{{"idle", false}, {"hook running", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			// unique to this test process: another run of this test on the
			// machine has sleepers of its own
			sleeper := strconv.Itoa(100000+os.Getpid()) + ".25"
			if tc.hook {
				startSleeper(t, ns, sleeper)
			}
			opts := options(t, ns, process.RoleAll)
			logs := logTo(t, &opts)
			p := start(t, opts)
			eventually.True(t, 30*time.Second, "the coordinator to start", func() bool { return logs.Count("coordinator started") == 1 })
			if tc.hook {
				eventually.True(t, 60*time.Second, "the hook to run", func() bool { return len(processesRunning("sleep", sleeper)) > 0 })
			}
			// another identity takes the Lease over by force
			holdLease(t, ns, "intruder", time.Now(), time.Hour)
			err, returned := p.wait(30 * time.Second)
			if !returned {
				t.Fatal("Run did not return within 30s of losing the Lease")
			}
			if !errors.Is(err, process.ErrLeaseLost) || !strings.Contains(err.Error(), ns+"/"+process.LeaderElectionID) {
				t.Fatalf("Run: %v, want ErrLeaseLost naming the Lease", err)
			}
			// the services stopped in the coordinator's order, then the one
			// error
			want := []string{`"service"="helm-monitors"`, `"service"="kube-event-handling"`, `"service"="cron"`, `"service"="event-handler"`, `"service"="queues"`, `"msg"="lost the Lease`}
			var order, errorLines []string
			for _, l := range logs.Get() {
				for _, marker := range want {
					if strings.Contains(l, marker) {
						order = append(order, marker)
					}
				}
				// funcr writes a "level" on Info lines only
				if !strings.Contains(l, `"level"=`) {
					errorLines = append(errorLines, l)
				}
			}
			if fmt.Sprint(order) != fmt.Sprint(want) {
				t.Errorf("stop order %v, want %v", order, want)
			}
			// With a hook running, the ordered stop cancels it after the
			// stop grace and says so at info level: that is how the stop
			// ends it, not a fault.
			if tc.hook && !slices.ContainsFunc(logs.Get(), func(l string) bool {
				return strings.Contains(l, `"level"=`) && strings.Contains(l, "running tasks cancelled") && strings.Contains(l, "startup "+ns+".sleeper")
			}) {
				t.Errorf("no info line names the hook task cancelled at stop:\n%s", strings.Join(logs.Get(), "\n"))
			}
			if len(errorLines) != 1 || !strings.Contains(errorLines[0], `"holder"="intruder"`) {
				t.Errorf("error lines %q, want only one, naming the new holder", errorLines)
			}
			if h, err := leaseHolder(ns); err != nil || h != "intruder" {
				t.Errorf("Lease holder %q (%v), want the intruder's hold untouched", h, err)
			}
			if pids := processesRunning("sleep", sleeper); len(pids) > 0 {
				t.Errorf("the hook's processes %v outlived the cluster role", pids)
			}
		})
	}
}

// startSleeper installs package ns/sleeper, whose startup hook runs
// `sleep <arg>` until it is killed.
func startSleeper(t *testing.T, ns, arg string) {
	t.Helper()
	hook := "#!/bin/sh\nif [ \"$1\" = --config ]; then echo '{\"configVersion\":\"v1\",\"onStartup\":1}'; exit 0; fi\nexec sleep " + arg + "\n"
	repo := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "sleeper", Hooks: map[string]string{"10-sleep.sh": hook}})
	ctx := context.Background()
	pr := &gadgetpmv1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: gadgetpmv1alpha1.PackageRepositorySpec{URL: "file://" + repo, Interval: metav1.Duration{Duration: time.Hour}}}
	if err := env.Client.Create(ctx, pr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, pr) })
	if err := env.Client.Create(ctx, &gadgetpmv1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sleeper"},
		Spec: gadgetpmv1alpha1.GadgetPackageSpec{Repository: ns, Package: "sleeper"}}); err != nil {
		t.Fatal(err)
	}
}

// processesRunning lists the processes whose command line is args.
func processesRunning(args ...string) []int {
	want := strings.Join(args, "\x00") + "\x00"
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || string(b) != want {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
