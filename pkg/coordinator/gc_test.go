package coordinator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
)

// runCollector runs col until the test ends.
func runCollector(t *testing.T, col *store.Collector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- col.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// present reports whether the store in dir holds digest's archive or
// extracted tree.
func present(dir, digest string) bool {
	for _, p := range []string{filepath.Join(dir, "packages", "archives", digest+".tgz"), filepath.Join(dir, "packages", "packages", digest)} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// aged writes data into st as an archive last written an hour ago (a
// package removed while the operator was away) and returns its digest.
func aged(t *testing.T, st *store.Store, dir string, data []byte) string {
	t.Helper()
	h := sha256.Sum256(data)
	digest := hex.EncodeToString(h[:])
	if err := st.PutArchive(digest, data); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "packages", "archives", digest+".tgz"), old, old); err != nil {
		t.Fatal(err)
	}
	return digest
}

// TestStoreGarbageCollection: the cluster role's package store keeps the
// archives of running packages and drops, at start, those of a package
// removed while the operator was away and, at the next tick, those of a
// package removed at runtime; each collection logs what it removed and
// the bytes freed.
func TestStoreGarbageCollection(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "keep"}, packagetest.Source{Name: "drop"})
	createRepo(t, "gc-"+ns, repoDir)
	_, _, _ = startWith(t, func(o *coordinator.Options) { o.DataDir = dir })
	createPackage(t, ns, "keep", "gc-"+ns)
	createPackage(t, ns, "drop", "gc-"+ns)
	keep := waitFor(t, ns, "keep", "Running", running).Status.Digest
	drop := waitFor(t, ns, "drop", "Running", running).Status.Digest
	if !present(dir, keep) || !present(dir, drop) {
		t.Fatalf("the running packages' archives are not in the store %s", dir)
	}

	st, _, err := coordinator.PackageStore(dir, env.Client, repoaccess.Policy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	away := aged(t, st, dir, packagetest.TGZ(t, packagetest.Entry{Name: "gone/Chart.yaml", Body: "name: gone\n"}))
	logs := &testlog.Lines{}
	col, err := coordinator.StoreCollector(st, env.Client, nil, 300*time.Millisecond, logs.Logger(0))
	if err != nil {
		t.Fatal(err)
	}
	runCollector(t, col)
	eventually.True(t, 30*time.Second, "the archive of a package removed while the operator was away to be collected at start", func() bool {
		return !present(dir, away)
	})
	if n := logs.Count("package store garbage collection", away, "bytesFreed"); n != 1 {
		t.Errorf("want one info line naming sha256:%s and the bytes freed, got %d:\n%s", away, n, strings.Join(logs.Get(), "\n"))
	}

	if err := env.Client.Delete(context.Background(), &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "drop"}}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "drop")
	eventually.True(t, 30*time.Second, "the archive of a package removed at runtime to be collected at the next tick", func() bool {
		return !present(dir, drop)
	})
	if !present(dir, keep) {
		t.Fatalf("the archive of the running package keep (sha256:%s) was collected", keep)
	}
	var gp v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "keep"}, &gp); err != nil || !running(&gp) {
		t.Fatalf("package keep is no longer Running: %v %+v", err, gp.Status)
	}
}

// TestStoreGarbageCollectionKeepsDownloadsInFlight: a digest no status
// names yet survives the collection while a download holds it and, once
// written, for the collector's MinAge (the install that will name it in
// its status); the same collection removes an unnamed, unheld, old one.
func TestStoreGarbageCollectionKeepsDownloadsInFlight(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	repoDir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "racer"})
	createRepo(t, "race-"+ns, repoDir)
	st, fetcher, err := coordinator.PackageStore(dir, env.Client, repoaccess.Policy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := aged(t, st, dir, packagetest.TGZ(t, packagetest.Entry{Name: "held/Chart.yaml", Body: "name: held\n"}))
	stale := aged(t, st, dir, packagetest.TGZ(t, packagetest.Entry{Name: "stale/Chart.yaml", Body: "name: stale\n"}))
	release := st.Hold(held)
	// Hold marks the digest used: make it look old again, so only the
	// hold keeps it.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "packages", "archives", held+".tgz"), old, old); err != nil {
		t.Fatal(err)
	}

	logs := &testlog.Lines{}
	col, err := store.NewCollector(store.CollectorOptions{Store: st, Named: func(context.Context) (map[string]bool, error) { return map[string]bool{}, nil },
		Interval: 50 * time.Millisecond, MinAge: time.Minute, Logger: logs.Logger(0)})
	if err != nil {
		t.Fatal(err)
	}
	// A package being installed: downloaded, no status names it yet.
	gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "racer"},
		Spec: v1alpha1.GadgetPackageSpec{Repository: "race-" + ns, Package: "racer", Version: "*"}}
	downloads := make(chan error, 1)
	var got string
	go func() {
		d, err := fetcher.Download(context.Background(), gp)
		got = d.Digest
		downloads <- err
	}()
	runCollector(t, col)
	if err := <-downloads; err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 30*time.Second, "the unnamed, unheld, old archive to be collected", func() bool { return !present(dir, stale) })
	baseline := logs.Count("package store garbage collection")
	eventually.True(t, 30*time.Second, "two more collections", func() bool {
		return logs.Count("package store garbage collection") >= baseline+2
	})
	if !present(dir, got) {
		t.Errorf("the archive of a download racing the collection (sha256:%s) was collected before its package's status could name it", got)
	}
	if !present(dir, held) {
		t.Fatalf("a held archive (sha256:%s) was collected", held)
	}
	release()
	eventually.True(t, 30*time.Second, "the archive to be collected once released", func() bool { return !present(dir, held) })
	if _, ok := st.Archive(got); !ok {
		t.Errorf("the downloaded archive sha256:%s is gone", got)
	}
}
