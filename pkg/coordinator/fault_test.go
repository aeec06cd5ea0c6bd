package coordinator_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// faultVersion is the chart version of every package of the fault tests:
// what status.version must say once they converged.
const faultVersion = "1.2.0"

// faultObjects is how many ConfigMaps each fault package's chart holds,
// besides packagetest's <release>-settings.
const faultObjects = 3

// faultRepo writes a repository of n packages fault-00… into a file://
// PackageRepository and returns the package names and the journal their
// hook appends every run to. Each package has a chart with faultObjects
// ConfigMaps labelled fault-package=<name>, and a recording hook bound to
// onStartup, afterDeleteHelm and a kubernetes binding on ConfigMaps of
// ns labelled fault-watch (its Synchronization runs at every start).
func faultRepo(t *testing.T, ns string, n int) (names []string, journal string) {
	t.Helper()
	journal = filepath.Join(t.TempDir(), "journal")
	config := fmt.Sprintf(`{"configVersion":"v1","onStartup":10,"afterDeleteHelm":10,"kubernetes":[{"name":"watched","apiVersion":"v1","kind":"ConfigMap",`+
		`"namespace":{"nameSelector":{"matchNames":[%q]}},"labelSelector":{"matchExpressions":[{"key":"fault-watch","operator":"Exists"}]}}]}`, ns)
	objects := fmt.Sprintf("{{ range $i := until %d }}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ $.Release.Name }}-obj-{{ $i }}\n  labels:\n    fault-package: {{ $.Release.Name }}\ndata:\n  i: {{ $i | quote }}\n{{ end }}\n", faultObjects)
	var sources []packagetest.Source
	for i := range n {
		name := fmt.Sprintf("fault-%02d", i)
		names = append(names, name)
		sources = append(sources, packagetest.Source{Name: name, Version: faultVersion,
			Hooks: map[string]string{"10-record.sh": recorder(name, journal, config, "")},
			Files: map[string]string{"templates/objects.yaml": objects}})
	}
	repoDir := packagetest.Repo(t, t.TempDir(), sources...)
	createRepo(t, "fault-"+ns, repoDir)
	for _, name := range names {
		createPackage(t, ns, name, "fault-"+ns)
	}
	return names, journal
}

// opProcess is a supervised `gadgetpm operator` process: restarted by the
// test as a Deployment's kubelet restarts its container, each start
// logging to a file of its own.
type opProcess struct {
	t    *testing.T
	bin  string
	args []string
	dir  string

	cur    *exec.Cmd
	done   chan error // of cur
	starts int
	logs   []string // one file per start
}

// newOperator returns a supervisor of the operator binary for namespace
// ns, with extra flags; it starts nothing. The test's cleanup kills the
// running process and, when the test failed, prints the end of each
// start's log.
func newOperator(t *testing.T, ns string, extra ...string) *opProcess {
	t.Helper()
	hookAccount(t)
	o := &opProcess{t: t, bin: buildBinary(t), dir: t.TempDir()}
	o.args = append([]string{"operator", "--kubeconfig", env.WriteKubeconfig(t), "--node-name", "test-node", "--data-dir", filepath.Join(o.dir, "data"),
		"--debug-socket", "-", "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--stream-bind-address", "127.0.0.1:0",
		"--namespaces", ns, "--leader-election-namespace", ns, "--stop-grace", "2s",
		// the hooks append to a journal outside their package: the
		// sandbox's read-only mounts would refuse it
		"--hook-sandbox", "off"}, extra...)
	t.Cleanup(func() {
		o.kill()
		if t.Failed() {
			for i, path := range o.logs {
				b, _ := os.ReadFile(path)
				lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
				t.Logf("log of start %d (last 40 lines):\n%s", i+1, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	return o
}

// start starts the process; one must not be running.
func (o *opProcess) start() {
	o.t.Helper()
	o.starts++
	path := filepath.Join(o.dir, fmt.Sprintf("log-%d", o.starts))
	f, err := os.Create(path)
	if err != nil {
		o.t.Fatal(err)
	}
	cmd := exec.Command(o.bin, o.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		o.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- cmd.Wait()
		_ = f.Close()
	}()
	o.cur, o.done, o.logs = cmd, done, append(o.logs, path)
}

// kill SIGKILLs the running process, if any, and waits for it.
func (o *opProcess) kill() {
	if o.cur == nil {
		return
	}
	_ = o.cur.Process.Signal(syscall.SIGKILL)
	<-o.done
	o.cur = nil
}

// exited reports whether the running process ended on its own, with its
// error; the process is then no longer running.
func (o *opProcess) exited() (bool, error) {
	select {
	case err := <-o.done:
		o.cur = nil
		return true, err
	default:
		return false, nil
	}
}

// releaseSecrets lists the Helm release Secrets of ns by release name.
func releaseSecrets(t *testing.T, ns string) map[string][]corev1.Secret {
	t.Helper()
	var list corev1.SecretList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{"owner": "helm"}); err != nil {
		t.Fatal(err)
	}
	out := map[string][]corev1.Secret{}
	for _, s := range list.Items {
		out[s.Labels["name"]] = append(out[s.Labels["name"]], s)
	}
	return out
}

// faultObjectsOf lists the ConfigMaps of ns the fault charts made, by
// package.
func faultObjectsOf(t *testing.T, ns string) map[string][]string {
	t.Helper()
	var list corev1.ConfigMapList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns), client.HasLabels{"fault-package"}); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, cm := range list.Items {
		out[cm.Labels["fault-package"]] = append(out[cm.Labels["fault-package"]], cm.Name)
	}
	return out
}

// runsSince counts the binding contexts of the journal's runs from line
// from on, by package and binding type ("onStartup", "afterDeleteHelm", "watched/Synchronization",
// "watched/Event").
func runsSince(t *testing.T, journal string, from int) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	runs := readJournal(t, journal)
	for _, r := range runs[min(from, len(runs)):] {
		if out[r.pkg] == nil {
			out[r.pkg] = map[string]int{}
		}
		// merged runs carry several contexts: each counts
		for _, c := range r.contexts {
			what, _ := c["binding"].(string)
			if typ, _ := c["type"].(string); typ != "" && typ != what {
				what += "/" + typ
			}
			out[r.pkg][what]++
		}
	}
	return out
}

// checkConverged asserts what a user relies on once names converged in
// ns: each Running at faultVersion with its chart's objects, one
// deployed Helm release whose revision status names, no pending release,
// and no release or object of a package that is not there.
func checkConverged(t *testing.T, ns string, names []string) {
	t.Helper()
	secrets := releaseSecrets(t, ns)
	objects := faultObjectsOf(t, ns)
	revisions := map[string]int{}
	defer func() { t.Logf("Helm revisions: %v", revisions) }()
	for _, name := range names {
		var gp v1alpha1.GadgetPackage
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp); err != nil {
			t.Fatal(err)
		}
		revisions[name] = gp.Status.HelmRevision
		if gp.Status.Version != faultVersion {
			t.Errorf("%s: status.version %q, want %q", name, gp.Status.Version, faultVersion)
		}
		deployed := 0
		latest := 0
		for _, s := range secrets[name] {
			v, _ := strconv.Atoi(s.Labels["version"])
			latest = max(latest, v)
			switch st := s.Labels["status"]; {
			case st == "deployed":
				deployed++
				if v != gp.Status.HelmRevision {
					t.Errorf("%s: deployed revision %d, status.helmRevision %d", name, v, gp.Status.HelmRevision)
				}
			case strings.HasPrefix(st, "pending"):
				t.Errorf("%s: release revision %d left %s", name, v, st)
			}
		}
		if deployed != 1 {
			t.Errorf("%s: %d deployed releases, want 1 (%d release Secrets)", name, deployed, len(secrets[name]))
		}
		if gp.Status.HelmRevision != latest {
			t.Errorf("%s: status.helmRevision %d, latest release revision %d", name, gp.Status.HelmRevision, latest)
		}
		if got := len(objects[name]); got != faultObjects {
			t.Errorf("%s: %d chart objects %v, want %d", name, got, objects[name], faultObjects)
		}
	}
	for rel := range secrets {
		if !slices.Contains(names, rel) {
			t.Errorf("release %s/%s of no package", ns, rel)
		}
	}
	for pkg, objs := range objects {
		if !slices.Contains(names, pkg) {
			t.Errorf("objects %v of no package %s", objs, pkg)
		}
	}
}

// checkRunsOfOneStart asserts that since from, the start that converged
// ran each package's onStartup and its binding's Synchronization once:
// at least once as the protocol promises, and not twice (a user would see
// a doubled run in a hook's effects).
func checkRunsOfOneStart(t *testing.T, journal string, from int, names []string) {
	t.Helper()
	runs := runsSince(t, journal, from)
	for _, name := range names {
		for _, what := range []string{"onStartup", "watched/Synchronization"} {
			if got := runs[name][what]; got != 1 {
				t.Errorf("%s: %s ran %d times in the last start, want 1 (runs %v)", name, what, got, runs[name])
			}
		}
	}
}

// watchedEventOnce creates a ConfigMap every package's hook watches and
// waits for each hook to see it, then checks none saw it twice.
func watchedEventOnce(t *testing.T, ns, journal string, names []string) {
	t.Helper()
	from := len(readJournal(t, journal))
	cm := &corev1.ConfigMap{}
	cm.Namespace, cm.Name, cm.Labels = ns, "watched", map[string]string{"fault-watch": "1"}
	if err := env.Client.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 2*time.Minute, "every package's hook to see the watched ConfigMap", func() error {
		runs := runsSince(t, journal, from)
		for _, name := range names {
			if runs[name]["watched/Event"] == 0 {
				return fmt.Errorf("%s saw no Event (runs since: %v)", name, runs)
			}
		}
		return nil
	})
	for name, r := range runsSince(t, journal, from) {
		if r["watched/Event"] > 1 {
			t.Errorf("%s: the one ConfigMap event delivered %d times", name, r["watched/Event"])
		}
	}
}

// deleteAll deletes the packages and checks that everything they made is
// gone: the GadgetPackages (finalizers released), their releases, their
// objects, and that each ran afterDeleteHelm.
func deleteAll(t *testing.T, ns, journal string, names []string) {
	t.Helper()
	from := len(readJournal(t, journal))
	for _, name := range names {
		gp := &v1alpha1.GadgetPackage{}
		gp.Namespace, gp.Name = ns, name
		if err := env.Client.Delete(context.Background(), gp); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		waitGone(t, ns, name)
	}
	if s := releaseSecrets(t, ns); len(s) > 0 {
		t.Errorf("release Secrets left after every package was deleted: %v", slices.Sorted(maps.Keys(s)))
	}
	if o := faultObjectsOf(t, ns); len(o) > 0 {
		t.Errorf("chart objects left after every package was deleted: %v", o)
	}
	runs := runsSince(t, journal, from)
	for _, name := range names {
		if got := runs[name]["afterDeleteHelm"]; got != 1 {
			t.Errorf("%s: afterDeleteHelm ran %d times, want 1", name, got)
		}
	}
}

func allRunning(t *testing.T, ns string, names []string) error {
	t.Helper()
	var list v1alpha1.GadgetPackageList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return err
	}
	var notYet []string
	for i := range list.Items {
		gp := &list.Items[i]
		if slices.Contains(names, gp.Name) && (!running(gp) || gp.Status.Version != faultVersion) {
			notYet = append(notYet, fmt.Sprintf("%s=%s/%s", gp.Name, gp.Status.Phase, gp.Status.Version))
		}
	}
	if len(notYet) > 0 {
		return fmt.Errorf("not Running at %s: %v", faultVersion, notYet)
	}
	return nil
}

// faultSeed is the seed of the kill moments: GADGETPM_FAULT_SEED replays
// a logged run, else the time picks one.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GADGETPM_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("GADGETPM_FAULT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (GADGETPM_FAULT_SEED=%d replays these kill moments)", seed, seed)
	return seed
}

// TestKilledTenTimesWhileConverging is fault case 2 of docs/development.md:
// 20 packages (hooks on onStartup, a kubernetes binding, afterDeleteHelm;
// a chart with objects) converge while the operator binary is SIGKILLed
// at 10 random moments and restarted each time (with leader election, so
// each restart also takes the Lease over from the killed holder). The
// moments are picked by progress (hook runs, release Secrets, a release
// pending), so they fall inside hooks, Helm installs and startup alike.
// Left running, the operator converges all 20 with nothing doubled or
// orphaned, and deleting them leaves nothing behind.
func TestKilledTenTimesWhileConverging(t *testing.T) {
	const packages, kills = 20, 10
	ns := env.Namespace(t)
	rng := rand.New(rand.NewPCG(faultSeed(t), 0))
	names, journal := faultRepo(t, ns, packages)
	// a short Lease, so that each restart takes it over from the killed
	// holder in seconds; Helm slowed to 5 requests a second, so that an
	// install lasts about a second and kills land inside installs too
	op := newOperator(t, ns, "--leader-elect", "--leader-election-lease-duration", "4s",
		"--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "1s",
		"--helm-qps", "5", "--helm-burst", "5")
	pendingAtKill := 0
	hookRuns := func() int { return len(readJournal(t, journal)) }
	releases := func() int {
		n := 0
		for _, s := range releaseSecrets(t, ns) {
			n += len(s)
		}
		return n
	}
	for i := range kills {
		op.start()
		// Each kill waits for one of three kinds of progress, so that
		// the kills fall in the hooks of a start, after releases
		// were written, and inside a Helm install or upgrade.
		var what string
		var reached func() bool
		switch rng.IntN(3) {
		case 0:
			target := hookRuns() + 1 + rng.IntN(10)
			what, reached = fmt.Sprintf("hook run %d", target), func() bool { return hookRuns() >= target }
		case 1:
			target := releases() + 1 + rng.IntN(3)
			what, reached = fmt.Sprintf("release Secret %d", target), func() bool { return releases() >= target }
		default:
			what, reached = "a release pending", func() bool { return pendingRelease(t, ns) }
		}
		eventually.True(t, 2*time.Minute, fmt.Sprintf("kill %d: %s or every package Running", i+1, what), func() bool {
			if exited, err := op.exited(); exited {
				// a loaded machine may miss a renewal of the short
				// Lease: the process exits 1 and is restarted, as its
				// pod would be
				t.Logf("kill %d: the operator exited on its own (%v); restarting it", i+1, err)
				op.start()
			}
			return reached() || allRunning(t, ns, names) == nil
		})
		op.kill()
		pending := pendingRelease(t, ns)
		if pending {
			pendingAtKill++
		}
		t.Logf("kill %d after %s (hook runs %d, release Secrets %d), a release left pending: %v", i+1, what, hookRuns(), releases(), pending)
	}
	t.Logf("%d of %d kills left a release pending", pendingAtKill, kills)

	from := len(readJournal(t, journal))
	op.start()
	eventually.NoError(t, 4*time.Minute, "every package Running after the last restart", func() error {
		if exited, err := op.exited(); exited {
			return fmt.Errorf("the operator exited after the last restart: %v", err)
		}
		return allRunning(t, ns, names)
	})
	checkConverged(t, ns, names)
	checkRunsOfOneStart(t, journal, from, names)
	watchedEventOnce(t, ns, journal, names)
	deleteAll(t, ns, journal, names)
	if exited, err := op.exited(); exited {
		t.Errorf("the operator exited: %v", err)
	}
}

// apiPause is how long fault case 3 freezes the API server: the issue's
// 30 s, twice the default Lease duration (15 s) and three times the renew
// deadline (10 s), so the holder cannot keep the Lease through it, and as
// long as the per-request deadlines of the hooks' and Helm's clients.
const apiPause = 30 * time.Second

// TestFrozenAPIServerWhileConverging is fault case 3 (a) of
// docs/development.md: the API server frozen with SIGSTOP for apiPause
// while packages converge, the operator with its default Lease timings.
// The holder cannot renew the Lease, so it stops its cluster role in
// order and exits 1 as docs/operator.md says (a Deployment restarts
// it); nothing else ends it (no panic, no other exit). Restarted as its
// pod would be, it converges every package with nothing lost or doubled:
// one deployed release each, none pending, onStartup and Synchronization
// once in the start that converged, an event delivered once, and a
// clean delete.
func TestFrozenAPIServerWhileConverging(t *testing.T) {
	const packages = 5
	ns := env.Namespace(t)
	names, journal := faultRepo(t, ns, packages)
	// the default Lease timings, what a user runs; Helm slowed as in
	// case 2, so that the freeze finds installs under way
	op := newOperator(t, ns, "--leader-elect", "--helm-qps", "5", "--helm-burst", "5")
	from := 0
	restart := func() {
		from = len(readJournal(t, journal))
		op.start()
	}
	var exits []string
	exited := func() {
		if done, err := op.exited(); done {
			exits = append(exits, fmt.Sprintf("start %d: %v", op.starts, err))
			restart()
		}
	}
	restart()
	eventually.True(t, 2*time.Minute, "a first release installed, the others still converging", func() bool {
		exited()
		return len(releaseSecrets(t, ns)) > 0
	})
	if allRunning(t, ns, names) == nil {
		t.Fatal("every package converged before the API server was frozen: the test froze nothing in the middle")
	}

	resume := env.PauseAPIServer(t)
	// The fault itself lasts apiPause; meanwhile the process is watched
	// and restarted whenever it exits, as its pod would be.
	frozen := time.After(apiPause)
	for waiting := true; waiting; {
		select {
		case <-frozen:
			waiting = false
		case <-time.After(100 * time.Millisecond):
			exited()
		}
	}
	resume()

	eventually.NoError(t, 4*time.Minute, "every package Running after the outage", func() error {
		exited()
		return allRunning(t, ns, names)
	})
	t.Logf("exits: %v", exits)
	for i, path := range op.logs {
		b, _ := os.ReadFile(path)
		for _, bad := range []string{"panic:", "fatal error:", "WARNING: DATA RACE"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("start %d logged %q", i+1, bad)
			}
		}
	}
	for _, e := range exits {
		if !strings.HasSuffix(e, "exit status 1") {
			t.Errorf("an exit other than the documented exit 1: %s", e)
		}
	}
	if len(exits) > 0 {
		// the first exit is the Lease's, in order, with its one error
		b, _ := os.ReadFile(op.logs[0])
		if !strings.Contains(string(b), "lost the Lease: the cluster role stopped in order") {
			t.Errorf("the first start exited without the documented lost-Lease error: %s", exits[0])
		}
	}
	checkConverged(t, ns, names)
	checkRunsOfOneStart(t, journal, from, names)
	watchedEventOnce(t, ns, journal, names)
	deleteAll(t, ns, journal, names)
}
