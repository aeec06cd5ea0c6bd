package coordinator_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
)

// heapBound is what the operator's heap in use may reach while an HTTP
// repository streams 2 GiB without a Content-Length, an OCI chart claims a
// 200 MiB layer and a hook writes 1 GiB to its values patch, with the
// default limits (64 MiB a package, 8 MiB a hook result file): the
// download's buffer grows to the package limit (doubling: at most about
// 128 MiB live at once) on top of the test process's own heap (the API
// server's client caches, Helm: tens of MiB). Reading the stream or the
// patch whole, as before the limits, passes it many times over.
const heapBound = 384 << 20

// heapPeak samples the heap in use until stop is called, which returns
// the largest sample.
func heapPeak() (stop func() uint64) {
	var (
		wg   sync.WaitGroup
		peak uint64
	)
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// TestHostileSizes: fault injection (4) and (5) of the durability issue.
// Each hostile package fails with an error naming it, the limit and its
// flag, in its status, an Event and the log; the good package beside them
// goes Running; the operator's heap stays under heapBound.
func TestHostileSizes(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	flood := `{"configVersion":"v1","beforeHelm":10}`
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "good", Hooks: map[string]string{"10-lifecycle.sh": recorder("good", dir+"/journal", lifecycleConfig, "")}},
		packagetest.Source{Name: "flood", Hooks: map[string]string{"10-flood.sh": recorder("flood", dir+"/journal", flood,
			`head -c 1G /dev/zero > "$VALUES_JSON_PATCH_PATH"`)}})
	packagetest.WriteIndex(t, repoDir,
		packagetest.IndexEntry{Name: "good"}, packagetest.IndexEntry{Name: "flood"},
		packagetest.IndexEntry{Name: "endless", URL: "endless/endless-1.0.0.tgz", Digest: strings.Repeat("a", 64)})
	httpURL, written := packagetest.HostileRepo(t, repoDir)
	ociURL, user, pass, ca := packagetest.OCIRegistryTLS(t, t.TempDir())
	packagetest.PushOCIClaiming(t, ociURL, ca, "huge", "1.0.0", 200<<20)

	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry", Namespace: ns},
		StringData: map[string]string{"username": user, "password": pass}}); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]v1alpha1.PackageRepositorySpec{
		"http-" + ns: {URL: httpURL, Insecure: true},
		"oci-" + ns:  {URL: ociURL, CABundle: ca, SecretRef: &v1alpha1.SecretReference{Name: "registry"}},
	} {
		spec.Interval = metav1.Duration{Duration: time.Minute}
		pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
		if err := env.Client.Create(ctx, pr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pr) })
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := before.HeapInuse
	peak := heapPeak()
	_, logs, _ := startWith(t, func(o *coordinator.Options) {
		o.RepositoryAccess = repoaccess.Policy{ClusterResourceNamespace: ns}
	})
	for _, name := range []string{"good", "flood", "endless"} {
		createPackage(t, ns, name, "http-"+ns)
	}
	createPackage(t, ns, "huge", "oci-"+ns)

	waitFor(t, ns, "good", "Running", running)
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"endless", []string{"endless-1.0.0.tgz", "more than the limit", "67108864 bytes (64 MiB)", "--max-package-size"}},
		{"huge", []string{"chart layer of", "/huge:1.0.0", "209715200 bytes (200 MiB)", "--max-package-size"}},
		{"flood", []string{"10-flood.sh", "$VALUES_JSON_PATCH_PATH", "8388608 bytes", "--max-hook-result-size"}},
	} {
		gp := waitFor(t, ns, tc.name, "an error naming the limit", func(gp *v1alpha1.GadgetPackage) bool {
			c := meta.FindStatusCondition(gp.Status.Conditions, v1alpha1.ConditionReady)
			return c != nil && c.Status == metav1.ConditionFalse && containsAll(c.Message, tc.want)
		})
		if gp.Status.Phase == v1alpha1.PhaseRunning {
			t.Errorf("%s: Running", tc.name)
		}
		var events corev1.EventList
		if err := env.Client.List(ctx, &events, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range events.Items {
			found = found || e.InvolvedObject.Name == tc.name && e.Type == corev1.EventTypeWarning && containsAll(e.Message, tc.want[len(tc.want)-1:])
		}
		if !found {
			t.Errorf("%s: no Warning Event naming %s", tc.name, tc.want[len(tc.want)-1])
		}
		if len(errorLines(logs, tc.want[len(tc.want)-1])) == 0 {
			t.Errorf("%s: no error line in the operator log naming %s", tc.name, tc.want[len(tc.want)-1])
		}
	}
	p := peak()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("heap in use: at start %d MiB, at most %d MiB, after a GC at the end %d MiB; the hostile repository sent %d MiB",
		start>>20, p>>20, after.HeapInuse>>20, written()>>20)
	if p > heapBound {
		t.Errorf("heap in use reached %d MiB, want at most %d MiB", p>>20, heapBound>>20)
	}
	// The good package is still Running.
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "good"}, &gp); err != nil || !running(&gp) {
		t.Errorf("good: %v %+v", err, gp.Status)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
