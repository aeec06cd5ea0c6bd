package gadgetpackage_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
)

// When a plan's download is given up on, the rest of that plan does not
// run, even before the controller has heard of the failure (its queue
// events lag behind the queue, which goes on at once): no Install without
// a digest, no Load without a chart. The package is Stalled on the
// download alone.
func TestTheRestOfAPlanGivenUpOnDoesNotRun(t *testing.T) {
	ns := env.Namespace(t)
	main := queue.PackageQueueName(ns+".cut", "")
	download := "download " + ns + ".cut"
	heldBack, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	qs := startWith(t, setup{tap: func(ev queue.Event) {
		if ev.Kind == queue.Failed && ev.Task == download {
			once.Do(func() {
				close(heldBack)
				<-release
			})
		}
	}})
	// Runs before startWith's cleanup, which waits for the event reader.
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	repoName, _ := fileRepo(t, ns, packagetest.Source{Name: "cut"})
	createPackage(t, ns, "cut", repoName, ">=3")

	select {
	case <-heldBack:
	case <-time.After(60 * time.Second):
		t.Fatal("the download was not given up on within 60s")
	}
	// The controller has not heard of the failure; the queue goes on with
	// whatever the plan left.
	eventually.True(t, 60*time.Second, "the main queue to be idle", func() bool {
		for _, q := range qs.Dump().Queues {
			if q.Name == main {
				return q.Running == nil && q.Length == 0
			}
		}
		return false
	})
	released.Do(func() { close(release) })

	gp := waitFor(t, ns, "cut", "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
	if c := condition(gp, v1alpha1.ConditionStalled); !strings.Contains(c.Message, download+" failed after 2 attempt(s)") {
		t.Errorf("Stalled = %+v, want the download's failure", c)
	}
	for _, q := range qs.Dump().Queues {
		if q.Name != main {
			continue
		}
		for _, ft := range q.Failed {
			if ft.Name != download {
				t.Errorf("%s ran after the plan's download was given up on and failed: %s", ft.Name, ft.Error)
			}
		}
	}
}
