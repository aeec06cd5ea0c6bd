package chartrepo_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// allocated runs f and returns how many bytes the process allocated
// meanwhile (TotalAlloc never shrinks, so a buffer filled and dropped
// still counts).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// bound is what reading through limit may allocate in all.
func bound(limit uint64) uint64 { return 4*limit + 1<<20 }

// An HTTP repository that streams 2 GiB for an archive or its index,
// with or without a Content-Length, costs a bounded amount of memory and
// fails with an error naming the limit and its flag. The bound, 4x the
// limit plus 1 MiB allocated in all, leaves room for io.ReadAll's growing
// buffer (about 2x) and the rest of a request, and is far below the 2 GiB
// an unbounded read would allocate.
func TestDownloadOverTheLimit(t *testing.T) {
	const limit = 8 << 20
	dir := packagetest.Repo(t, t.TempDir(), packagetest.Source{Name: "execsnoop", Version: "1.0.0"})
	unused := strings.Repeat("a", 64) // never reached: the download fails first
	packagetest.WriteIndex(t, dir,
		packagetest.IndexEntry{Name: "execsnoop"},
		packagetest.IndexEntry{Name: "endless", URL: "endless/endless-1.0.0.tgz", Digest: unused},
		packagetest.IndexEntry{Name: "declared", URL: "declared/declared-1.0.0.tgz", Digest: unused})
	url, written := packagetest.HostileRepo(t, dir)

	c, err := chartrepo.New(chartrepo.Options{URL: url, MaxChartBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := c.Index(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		maxWrite int64 // what the server may have sent when the client gave up
		want     string
	}{
		// Read through the limit: abort once it is passed.
		{"endless", packagetest.HostileSize / 8, "more than the limit"},
		// Refused by its Content-Length, before the body is read.
		{"declared", packagetest.HostileSize / 8, "2147483648 bytes (2 GiB)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := chartrepo.Resolve(idx, tc.name, "")
			if err != nil {
				t.Fatal(err)
			}
			sentBefore := written()
			alloc := allocated(func() { _, err = c.Download(ctx, v) })
			if !errors.Is(err, chartrepo.ErrTooLarge) {
				t.Fatalf("download: %v, want ErrTooLarge", err)
			}
			for _, want := range []string{tc.name + "-1.0.0.tgz", tc.want, "8388608 bytes (8 MiB)", "--max-package-size"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if alloc > bound(limit) {
				t.Errorf("the download allocated %d bytes, want at most %d", alloc, bound(limit))
			}
			t.Logf("%s: allocated %d bytes; the server sent %d bytes", tc.name, alloc, written()-sentBefore)
		})
	}

	// The good package of the same repository downloads.
	v, err := chartrepo.Resolve(idx, "execsnoop", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, v); err != nil {
		t.Fatalf("good package: %v", err)
	}

	// index.yaml is read through its own limit.
	for _, path := range []string{"endless", "declared"} {
		ic, err := chartrepo.New(chartrepo.Options{URL: url + "/" + path, MaxIndexBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		var ierr error
		alloc := allocated(func() { _, ierr = ic.Index(ctx) })
		if !errors.Is(ierr, chartrepo.ErrTooLarge) || !strings.Contains(ierr.Error(), "--max-index-size") || !strings.Contains(ierr.Error(), path+"/index.yaml") {
			t.Errorf("%s index: %v, want ErrTooLarge naming the file and --max-index-size", path, ierr)
		}
		if alloc > bound(1<<20) {
			t.Errorf("%s index: allocated %d bytes, want at most %d", path, alloc, bound(1<<20))
		}
	}
}

// An OCI chart whose layer descriptor says 200 MiB is refused by that
// size before its layer is pulled.
func TestOCILayerOverTheLimit(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Version: "1.0.0"})
	url, user, pass := packagetest.OCIRegistry(t, out)
	packagetest.PushOCIClaiming(t, url, nil, "huge", "1.0.0", 200<<20)

	c, err := chartrepo.New(chartrepo.Options{URL: url, Username: user, Password: pass, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := c.Index(ctx, "huge", "execsnoop")
	if err != nil {
		t.Fatal(err)
	}
	v, err := chartrepo.Resolve(idx, "huge", "")
	if err != nil {
		t.Fatal(err)
	}
	var derr error
	alloc := allocated(func() { _, derr = c.Download(ctx, v) })
	if !errors.Is(derr, chartrepo.ErrTooLarge) {
		t.Fatalf("download: %v, want ErrTooLarge", derr)
	}
	for _, want := range []string{"chart layer of " + strings.TrimPrefix(url, "oci://") + "/huge:1.0.0", "209715200 bytes (200 MiB)", "67108864 bytes (64 MiB)", "--max-package-size"} {
		if !strings.Contains(derr.Error(), want) {
			t.Errorf("error %q lacks %q", derr, want)
		}
	}
	if alloc > 4<<20 {
		t.Errorf("the refused pull allocated %d bytes, want at most %d", alloc, 4<<20)
	}
	// The registry's good chart pulls.
	v, err = chartrepo.Resolve(idx, "execsnoop", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, v); err != nil {
		t.Fatalf("good chart: %v", err)
	}
}
