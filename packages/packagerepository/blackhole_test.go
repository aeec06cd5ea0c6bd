package packagerepository

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// TestBlackholedRepositoryDelaysOnlyItself: a repository that accepts the
// connection and never answers holds up only its own sync. A good
// repository created while it hangs syncs at once; the blackholed one
// then fails at its spec.timeout with reason Timeout (a message naming
// the URL and spec.timeout, a Warning Event, one error line), its
// connection closed, and is retried.
func TestBlackholedRepositoryDelaysOnlyItself(t *testing.T) {
	const timeout = 15 * time.Second
	var logs testlog.Lines
	startController(t, logs.Logger(0), repoaccess.Policy{})

	bh := packagetest.NewBlackhole(t)
	created := time.Now()
	hung := newRepo(t, v1alpha1.PackageRepositorySpec{URL: "http://" + bh.Addr, Insecure: true,
		Timeout: metav1.Duration{Duration: timeout}, Interval: metav1.Duration{Duration: time.Second}})
	eventually.True(t, 30*time.Second, "the blackholed repository's sync to connect", func() bool { return len(bh.Conns()) > 0 })

	srv := serve(t, packagetest.Repo(t, t.TempDir(), packagetest.Source{}), "", "")
	good := newRepo(t, v1alpha1.PackageRepositorySpec{URL: srv.URL, Insecure: true})
	waitRepo(t, good.Name, "Ready=True", func(pr *v1alpha1.PackageRepository) bool {
		c := ready(pr)
		return c != nil && c.Status == metav1.ConditionTrue && pr.Status.PackageCount == 1
	})
	// The good repository synced while the other still hangs: its
	// request is open and it has no Ready condition yet.
	if at := bh.Conns()[0].Closed(); !at.IsZero() {
		t.Errorf("the good repository synced only after the blackholed one's request ended (%v after it began)", at.Sub(created))
	}
	if c := ready(waitRepo(t, hung.Name, "exists", func(*v1alpha1.PackageRepository) bool { return true })); c != nil {
		t.Errorf("the good repository synced only after the blackholed one failed: %+v", c)
	}

	url := "http://" + bh.Addr
	got := waitRepo(t, hung.Name, "Ready=False Timeout", func(pr *v1alpha1.PackageRepository) bool {
		c := ready(pr)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == ReasonTimeout
	})
	want := []string{"cannot read " + url, "timeout 15s (spec.timeout)"}
	for _, w := range want {
		if c := ready(got); !strings.Contains(c.Message, w) {
			t.Errorf("Ready message %q does not say %q", c.Message, w)
		}
	}
	env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: metav1.NamespaceDefault, Kind: "PackageRepository", Name: hung.Name,
		Type: corev1.EventTypeWarning, Reason: ReasonTimeout, Parts: want})
	closed := eventually.Value(t, 10*time.Second, "the timed-out connection to be closed", func() (time.Time, error) {
		if at := bh.Conns()[0].Closed(); !at.IsZero() {
			return at, nil
		}
		return time.Time{}, errors.New("still open")
	})
	if closed.Before(created.Add(timeout)) {
		t.Errorf("connection closed %v after the repository was created, before its spec.timeout %v", closed.Sub(created), timeout)
	}
	// Retried, and the same failure again is not another error line.
	eventually.True(t, 60*time.Second, "a retry of the blackholed repository", func() bool { return len(bh.Conns()) > 1 })
	if s := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReconciling); s == nil || !strings.Contains(s.Message, "retrying in") {
		t.Errorf("Reconciling = %+v, want the retry's delay", s)
	}
	if n := logs.Count("sync failed", `"repository"="`+hung.Name+`"`, url, ReasonTimeout, "spec.timeout"); n != 1 {
		t.Errorf("%d error lines for the blackholed repository, want 1:\n%s", n, strings.Join(logs.Get(), "\n"))
	}
}

// TestRetryBacksOff: a failing repository is retried after its interval
// or a minute, whichever is shorter, doubling per consecutive failure up
// to the longer of the two; a new generation or a success starts over.
func TestRetryBacksOff(t *testing.T) {
	tests := []struct {
		interval time.Duration
		want     []time.Duration
	}{
		{10 * time.Minute, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
		{time.Second, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}},
		{time.Minute, []time.Duration{time.Minute, time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.interval.String(), func(t *testing.T) {
			r := &Reconciler{}
			pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: "gadgets", Generation: 1}}
			for i, want := range tt.want {
				if got := r.retryAfter(pr, tt.interval); got != want {
					t.Errorf("failure %d: retry after %v, want %v", i+1, got, want)
				}
			}
			pr.Generation++
			if got := r.retryAfter(pr, tt.interval); got != tt.want[0] {
				t.Errorf("after a spec change: retry after %v, want %v", got, tt.want[0])
			}
			r.retryAfter(pr, tt.interval)
			r.succeeded(pr.Name)
			if got := r.retryAfter(pr, tt.interval); got != tt.want[0] {
				t.Errorf("after a success: retry after %v, want %v", got, tt.want[0])
			}
		})
	}
}
