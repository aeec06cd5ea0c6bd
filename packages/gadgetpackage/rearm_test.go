package gadgetpackage_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/queue"
)

// laggingClient is the controller's client whose cache falls behind on
// demand, as an informer does that has not delivered the newest versions
// yet: once armed for a package, the controller's next status write to
// it freezes the package's version just before that write, and every
// read of the package returns that version until thaw.
type laggingClient struct {
	client.Client
	// live reads the API server, uncached.
	live client.Reader

	mu sync.Mutex
	// armed and frozen by package; stale counts the reads answered from
	// a frozen version. Guarded by mu.
	armed  map[client.ObjectKey]bool
	frozen map[client.ObjectKey]*v1alpha1.GadgetPackage
	stale  map[client.ObjectKey]int
}

func newLaggingClient(live client.Reader) *laggingClient {
	return &laggingClient{live: live, armed: map[client.ObjectKey]bool{},
		frozen: map[client.ObjectKey]*v1alpha1.GadgetPackage{}, stale: map[client.ObjectKey]int{}}
}

// wrap is a setup.client.
func (c *laggingClient) wrap(inner client.Client) client.Client {
	c.Client = inner
	return c
}

// freezeAtNextStatusWrite arms the lag for key.
func (c *laggingClient) freezeAtNextStatusWrite(key client.ObjectKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed[key] = true
}

// thaw lets reads of key see the API server's current version again.
func (c *laggingClient) thaw(key client.ObjectKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.frozen, key)
	delete(c.armed, key)
}

func (c *laggingClient) staleReads(key client.ObjectKey) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stale[key]
}

func (c *laggingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := c.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	gp, ok := obj.(*v1alpha1.GadgetPackage)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.frozen[key]; ok {
		old.DeepCopyInto(gp)
		c.stale[key]++
	}
	return nil
}

func (c *laggingClient) Status() client.SubResourceWriter {
	return laggingStatus{SubResourceWriter: c.Client.Status(), c: c}
}

// freeze keeps the API server's current version of an armed package.
func (c *laggingClient) freeze(ctx context.Context, obj client.Object) error {
	key := client.ObjectKeyFromObject(obj)
	c.mu.Lock()
	armed := c.armed[key]
	delete(c.armed, key)
	c.mu.Unlock()
	if !armed {
		return nil
	}
	var gp v1alpha1.GadgetPackage
	if err := c.live.Get(ctx, key, &gp); err != nil {
		return err
	}
	c.mu.Lock()
	c.frozen[key] = &gp
	c.mu.Unlock()
	return nil
}

type laggingStatus struct {
	client.SubResourceWriter
	c *laggingClient
}

func (s laggingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if err := s.c.freeze(ctx, obj); err != nil {
		return err
	}
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// failures counts the Failed events of each task the controller handled,
// and the stale reads of a package up to then.
type failures struct {
	lc  *laggingClient
	key client.ObjectKey

	mu sync.Mutex
	// n by task, and staleAt: the stale reads of key when the last one was
	// handled. Guarded by mu.
	n       map[string]int
	staleAt int
}

func (f *failures) handled(ev queue.Event) {
	if ev.Kind != queue.Failed {
		return
	}
	stale := f.lc.staleReads(f.key)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n[ev.Task]++
	f.staleAt = stale
}

func (f *failures) of(task string) (n, staleAt int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[task], f.staleAt
}

// A package that stalls is not re-armed because the controller's cache
// has not yet seen the status the controller itself wrote — neither the
// observedGeneration of its first status nor the lastHandledRetry of a
// retry it handled: its download is given up on once per spec and once
// per retry value, and it ends Stalled with a status that says so.
func TestStallBeforeTheCacheSawTheStatusIsNoSpecChange(t *testing.T) {
	ns := env.Namespace(t)
	key := client.ObjectKey{Namespace: ns, Name: "lagged"}
	download := "download " + ns + ".lagged"
	lc := newLaggingClient(env.Client)
	f := &failures{lc: lc, key: key, n: map[string]int{}}
	startWith(t, setup{client: lc.wrap, handled: f.handled})
	repoName, _ := fileRepo(t, ns, packagetest.Source{Name: "lagged"})

	// stalledOnce waits until the controller has handled the failure of
	// the download and then read the package's stale version, a chance to
	// re-arm it; then it lets the cache catch up and waits for the status
	// the controller writes then.
	stalledOnce := func(what string, downloads int, cond func(*v1alpha1.GadgetPackage) bool) {
		t.Helper()
		eventually.NoError(t, 60*time.Second, what+": a stale read after the failure", func() error {
			n, staleAt := f.of(download)
			if n > downloads {
				t.Fatalf("%s: %d downloads given up on, want %d: the controller re-armed the package on its own status", what, n, downloads)
			}
			if n < downloads || lc.staleReads(key) <= staleAt {
				return fmt.Errorf("%d downloads given up on, %d stale reads (%d when the last failure was handled)", n, lc.staleReads(key), staleAt)
			}
			return nil
		})
		lc.thaw(key)
		// The writes made meanwhile reach the cache: an event, which a
		// label change stands for here.
		var gp v1alpha1.GadgetPackage
		if err := env.Client.Get(context.Background(), key, &gp); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(gp.DeepCopy())
		metav1.SetMetaDataLabel(&gp.ObjectMeta, "catch-up", strconv.Itoa(downloads))
		if err := env.Client.Patch(context.Background(), &gp, patch); err != nil {
			t.Fatal(err)
		}
		got := waitFor(t, ns, "lagged", what, func(gp *v1alpha1.GadgetPackage) bool {
			return isTrue(gp, v1alpha1.ConditionStalled) && cond(gp)
		})
		if n, _ := f.of(download); n != downloads {
			t.Fatalf("%s: %d downloads given up on, want %d: the controller re-armed the package on its own status", what, n, downloads)
		}
		if c := condition(got, v1alpha1.ConditionReconciling); c == nil || c.Status != metav1.ConditionFalse {
			t.Errorf("%s: Reconciling = %+v beside Stalled", what, c)
		}
		if c := condition(got, v1alpha1.ConditionReady); c.Reason != v1alpha1.ReasonDownloadFailed || !strings.Contains(c.Message, download+" failed after 2 attempt(s)") {
			t.Errorf("%s: Ready = %+v, want the download's failure", what, c)
		}
	}

	// Every read after the first status write returns the version before
	// it: observedGeneration 0.
	lc.freezeAtNextStatusWrite(key)
	createPackage(t, ns, "lagged", repoName, ">=3")
	stalledOnce("Stalled on the first plan", 1, func(gp *v1alpha1.GadgetPackage) bool { return gp.Status.ObservedGeneration == gp.Generation })

	// A retry: the reads after the write that handled it return the
	// version before it, whose lastHandledRetry is empty.
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), key, &gp); err != nil {
		t.Fatal(err)
	}
	lc.freezeAtNextStatusWrite(key)
	patch := client.MergeFrom(gp.DeepCopy())
	gp.Annotations = map[string]string{v1alpha1.RetryAnnotation: "1"}
	if err := env.Client.Patch(context.Background(), &gp, patch); err != nil {
		t.Fatal(err)
	}
	stalledOnce("Stalled on the retry", 2, func(gp *v1alpha1.GadgetPackage) bool { return gp.Status.LastHandledRetry == "1" })
}

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
