package coordinator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
	"github.com/gadgetpm/gadgetpm/queue"
)

// TestQueueRoutingEndToEnd: a run for a binding with `queue: slow` is
// enqueued to the package's queue "<key>/slow" and runs from there, so a
// hook blocked in it holds up nothing in the main queue; `queue: main` is
// the main queue, as in shell-operator.
func TestQueueRoutingEndToEnd(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	gate := filepath.Join(dir, "gate")
	binding := func(name, route, queueName string) string {
		q := ""
		if queueName != "" {
			q = fmt.Sprintf(`,"queue":%q,"waitForSynchronization":false`, queueName)
		}
		return fmt.Sprintf(`{"configVersion":"v1","kubernetes":[{"name":%q,"kind":"ConfigMap",
 "namespace":{"nameSelector":{"matchNames":[%q]}},"labelSelector":{"matchLabels":{"route":%q}},
 "executeHookOnSynchronization":false%s}]}`, name, ns, route, q)
	}
	// The slow hook blocks until the gate file exists (at most a minute).
	block := fmt.Sprintf(`i=0; while [ ! -e %q ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done`, gate)
	repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "routed", Hooks: map[string]string{
		"10-slow.sh":  recorder("routed", journal, binding("slowcms", "slow", "slow"), block),
		"20-main.sh":  recorder("routed", journal, binding("maincms", "main", ""), ""),
		"30-named.sh": recorder("routed", journal, binding("namedmain", "named-main", "main"), ""),
	}})
	createRepo(t, "routing-"+ns, repoDir)
	op, _, _ := start(t)
	// Registered after start, so it runs before the operator stops.
	t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o644) })
	createPackage(t, ns, "routed", "routing-"+ns)
	waitFor(t, ns, "routed", "Running", running)

	key := ns + ".routed"
	slowQueue := queue.PackageQueueName(key, "slow")
	cm := func(name, route string) {
		t.Helper()
		obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"route": route}}}
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	waitRun := func(binding string) {
		t.Helper()
		eventually.NoError(t, 60*time.Second, "a run for binding "+binding, func() error {
			if j := readJournal(t, journal); index(j, "routed", binding) < 0 {
				return fmt.Errorf("journal %+v", j)
			}
			return nil
		})
	}
	queueOf := func(d debugserver.Dump, name string) *queue.QueueDump {
		for i := range d.Queues.Queues {
			if d.Queues.Queues[i].Name == name {
				return &d.Queues.Queues[i]
			}
		}
		return nil
	}

	// The slow hook starts and blocks, running from <key>/slow.
	cm("to-slow", "slow")
	waitRun("slowcms")
	d := op.Dump()
	q := queueOf(d, slowQueue)
	if q == nil || q.Running == nil || !strings.Contains(q.Running.Name, "10-slow.sh") {
		t.Fatalf("queue %s does not run the slow hook: %+v (queues %+v)", slowQueue, q, d.Queues.Queues)
	}
	if mq := queueOf(d, key); mq != nil && mq.Running != nil && strings.Contains(mq.Running.Name, "10-slow.sh") {
		t.Errorf("the slow hook runs in the main queue %s", key)
	}
	pd, ok := op.Package(key)
	if !ok || !slices.Contains(pd.Queues, slowQueue) {
		t.Errorf("package dump queues %v do not list %s", pd.Queues, slowQueue)
	}

	// Meanwhile main-queue bindings run, `queue: main` among them.
	cm("to-main", "main")
	cm("to-named-main", "named-main")
	waitRun("maincms")
	waitRun("namedmain")
	d = op.Dump()
	if q := queueOf(d, slowQueue); q == nil || q.Running == nil || !strings.Contains(q.Running.Name, "10-slow.sh") {
		t.Errorf("the slow hook should still be running in %s while the main queue went on: %+v", slowQueue, q)
	}
	if q := queueOf(d, queue.PackageQueueName(key, "main")); q != nil {
		t.Errorf("queue: main made its own queue %s; it is the main queue", q.Name)
	}
	if runs := readJournal(t, journal); index(runs, "routed", "slowcms") > index(runs, "routed", "maincms") {
		t.Errorf("journal order %+v: the slow run started first", runs)
	}

	// Released, the slow run completes and its queue empties.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 60*time.Second, "queue "+slowQueue+" to drain", func() error {
		q := queueOf(op.Dump(), slowQueue)
		if q != nil && q.Running == nil && q.Length == 0 && len(q.Failed) == 0 {
			return nil
		}
		return fmt.Errorf("%+v", q)
	})
}
