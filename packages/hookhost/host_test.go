package hookhost_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/packages/hookhost"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
	"github.com/gadgetpm/gadgetpm/pkg/objectpatch"
	"github.com/gadgetpm/gadgetpm/queue"
	"github.com/gadgetpm/gadgetpm/scheduler/cron"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// services are the real services a host is given, with the event loop
// the coordinator would run between them.
type services struct {
	opts   hookhost.Options
	events *kubeevents.Monitors
	queues *queue.Service
	cron   *cron.Crontab
}

func newServices(t *testing.T) *services {
	t.Helper()
	events, err := kubeevents.New(kubeevents.Options{Config: env.Config})
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := hooks.NewRESTMapper(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	patcher, err := objectpatch.New(env.Config, mapper, nil)
	if err != nil {
		t.Fatal(err)
	}
	helm, err := nelm.New(env.Config, nelm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &services{events: events, queues: queue.NewService(queue.Options{}), cron: cron.New(cron.Options{})}
	s.opts = hookhost.Options{
		Runner: hooks.NewRunner(hooks.RunnerOptions{}), KubeEvents: events, Patcher: patcher, Schedules: s.cron,
		Queues: s.queues, Releases: helm, Mapper: mapper, Client: env.Client,
	}
	return s
}

// run starts the event monitors and routes their events and the queue
// service's to h until the test ends.
func (s *services) run(t *testing.T, h *hookhost.Host) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.events.Start(ctx); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		kube, qev := s.events.Events(), s.queues.Events()
		for kube != nil || qev != nil {
			select {
			case ev, ok := <-kube:
				if !ok {
					kube = nil
					continue
				}
				h.OnKubeEvent(ev)
			case ev, ok := <-qev:
				if !ok {
					qev = nil
					continue
				}
				h.OnQueueEvent(ev)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := s.queues.Stop(sctx); err != nil {
			t.Error(err)
		}
		wg.Wait()
	})
}

// observer records the runs the host reports.
type observer struct {
	mu   sync.Mutex
	runs []string
}

func (o *observer) HookRan(key, hook string, _ time.Time, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runs = append(o.runs, key+" "+hook+" "+errString(err))
}

func (o *observer) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.runs...)
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// watchHook watches ConfigMaps in ns, waits for its Synchronization and
// appends the binding context types it runs for to journal.
func watchHook(ns, journal string) string {
	return `#!/bin/sh
if [ "$1" = "--config" ]; then
  cat <<'EOF'
{"configVersion":"v1","kubernetes":[{"name":"cms","apiVersion":"v1","kind":"ConfigMap","namespace":{"nameSelector":{"matchNames":["` + ns + `"]}},"waitForSynchronization":true}]}
EOF
  exit 0
fi
echo "ran: $(tr -d ' \n' < "$BINDING_CONTEXT_PATH" | grep -o '"type":"[A-Za-z]*"' | tr '\n' ' ')"
grep -o '"type":"[A-Za-z]*"' "$BINDING_CONTEXT_PATH" >> ` + journal + `
`
}

// A package's start waits for its binding's Synchronization run; after
// it, an object's change runs the hook again; the dump shows the runs,
// the hook's output and the synced monitor, and the observer hears of
// every run. A forgotten package is gone from the host.
func TestEnableWaitsForSynchronizationAndEventsRunHooks(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	root := packagetest.Write(t, dir, packagetest.Source{Name: "watcher", Hooks: map[string]string{"10-watch.sh": watchHook(ns, journal)}})
	p, err := loader.Load(context.Background(), root, loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watcher"}}
	key := ns + ".watcher"

	s := newServices(t)
	obs := &observer{}
	s.opts.Observer = obs
	h, err := hookhost.New(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	s.run(t, h)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.Prepare(ctx, key, p, gp); err != nil {
		t.Fatal(err)
	}
	if err := h.Enable(ctx, key); err != nil {
		t.Fatal(err)
	}
	// Enable returned: the Synchronization run has happened.
	if b, _ := os.ReadFile(journal); !strings.Contains(string(b), `"type":"Synchronization"`) {
		t.Fatalf("Enable returned before the Synchronization run; journal: %q", b)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "one"}}
	if err := env.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "an Event run after the ConfigMap was created", func() bool {
		b, _ := os.ReadFile(journal)
		return strings.Contains(string(b), `"type":"Event"`)
	})
	eventually.True(t, 10*time.Second, "the observer hears of both runs", func() bool {
		return len(obs.get()) >= 2
	})
	for _, r := range obs.get() {
		if r != key+" 10-watch.sh ok" {
			t.Errorf("observer heard %q, want %q", r, key+" 10-watch.sh ok")
		}
	}

	d, ok := h.Package(key)
	if !ok {
		t.Fatalf("Package(%s) found nothing", key)
	}
	if len(d.Hooks) != 1 || d.Hooks[0].Name != "10-watch.sh" || d.Hooks[0].Runs < 2 || d.Hooks[0].LastRun == nil || d.Hooks[0].LastError != "" {
		t.Fatalf("dump hooks %+v, want 10-watch.sh with at least 2 successful runs", d.Hooks)
	}
	if out := d.Hooks[0].Output; len(out) == 0 || !strings.HasPrefix(out[len(out)-1].Text, "ran: ") {
		t.Errorf("dump output %+v, want the hook's last line", out)
	}
	if len(d.Subscriptions) != 1 || !d.Subscriptions[0].Synced || d.Subscriptions[0].Kind != "ConfigMap" || d.Subscriptions[0].Objects < 1 {
		t.Errorf("dump subscriptions %+v, want one synced ConfigMap monitor with the object", d.Subscriptions)
	}
	snaps, ok := h.HookSnapshots(key, "10-watch.sh")
	if !ok || len(snaps["cms"]) < 1 {
		t.Errorf("snapshots %+v, want binding cms with the ConfigMap", snaps)
	}
	if _, ok := h.HookSnapshots(key, "nope.sh"); ok {
		t.Error("snapshots of an unknown hook were found")
	}

	h.Forget(key)
	if _, ok := h.Package(key); ok {
		t.Error("a forgotten package is still in the dump")
	}
	if err := h.Enable(ctx, key); err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("Enable of a forgotten package: %v, want an error naming %s", err, key)
	}
}

// New names every service it was not given.
func TestNewRequiresItsServices(t *testing.T) {
	full := newServices(t).opts
	for _, tc := range []struct {
		field string
		clear func(*hookhost.Options)
	}{
		{"Runner", func(o *hookhost.Options) { o.Runner = nil }},
		{"KubeEvents", func(o *hookhost.Options) { o.KubeEvents = nil }},
		{"Patcher", func(o *hookhost.Options) { o.Patcher = nil }},
		{"Schedules", func(o *hookhost.Options) { o.Schedules = nil }},
		{"Queues", func(o *hookhost.Options) { o.Queues = nil }},
		{"Releases", func(o *hookhost.Options) { o.Releases = nil }},
		{"Mapper", func(o *hookhost.Options) { o.Mapper = nil }},
		{"Client", func(o *hookhost.Options) { o.Client = nil }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			o := full
			tc.clear(&o)
			_, err := hookhost.New(o)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("New without %s: %v, want an error naming it", tc.field, err)
			}
		})
	}
	if _, err := hookhost.New(full); err != nil {
		t.Fatalf("New with every service: %v", err)
	}
}

// A package that acts as a service account (its own, or the default
// one) cannot be prepared by a host that cannot give its hooks that
// account's credentials: the error names the package and the account.
// A package without one is prepared as before.
func TestPrepareNeedsAccountCredentialsForAnIdentity(t *testing.T) {
	ns := env.Namespace(t)
	root := packagetest.Write(t, t.TempDir(), packagetest.Source{Name: "watcher", Hooks: map[string]string{"10-watch.sh": watchHook(ns, filepath.Join(t.TempDir(), "journal"))}})
	p, err := loader.Load(context.Background(), root, loader.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec, defaultSA string
		want                  string // "" for no error
	}{
		{"own account", "sa-own", "", "GadgetPackage " + ns + "/watcher acts as service account " + ns + "/sa-own"},
		{"default account", "", "sa-default", "GadgetPackage " + ns + "/watcher acts as service account " + ns + "/sa-default"},
		{"operator", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServices(t)
			s.opts.DefaultServiceAccount = tc.defaultSA
			h, err := hookhost.New(s.opts)
			if err != nil {
				t.Fatal(err)
			}
			gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watcher"}, Spec: v1alpha1.GadgetPackageSpec{ServiceAccountName: tc.spec}}
			err = h.Prepare(context.Background(), ns+".watcher", p, gp)
			defer h.Forget(ns + ".watcher")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Prepare: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Prepare: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
