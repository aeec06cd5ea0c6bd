package ebpfstage

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// igTopGadget is bpf/testdata/ig_top_opens.bpf.o: a map iterator of
// Inspektor Gadget's ABI counting openat calls per thread.
func igTopGadget(t testing.TB) gadget.Gadget {
	t.Helper()
	return gadget.Gadget{Name: "ig-top-opens", Object: testObject(t, "ig_top_opens.bpf.o")}
}

func TestIGMapIterCatalog(t *testing.T) {
	cat, err := Catalog(igTopGadget(t).Object, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.DataSources) != 1 || cat.DataSources[0].Name != "opens" || cat.DataSources[0].Kind != "interval" {
		t.Fatalf("data sources = %+v", cat.DataSources)
	}
	var names []string
	for _, f := range cat.DataSources[0].Fields {
		names = append(names, f.Name+":"+f.Type)
	}
	// the key's members, then the value's
	if got, want := fmt.Sprint(names), "[pid:uint32 tid:uint32 comm:string opens:uint64]"; got != want {
		t.Errorf("fields %s, want %s", got, want)
	}
	params := map[string]gadget.ParamDesc{}
	for _, p := range cat.Params {
		params[p.Key] = p
	}
	for key, def := range map[string]string{MapFetchIntervalParam: "1s", MapFetchCountParam: "0", MaxEntriesParam: "0", SortParam: "", "targ_pid": "0"} {
		if p, ok := params[key]; !ok || p.Default != def {
			t.Errorf("param %s = %+v (present %v), want default %q", key, p, ok, def)
		}
	}
}

// opener is a goroutine alone on its OS thread that opens a file n times
// each time it is told to; its thread id is tid.
type opener struct {
	tid  int
	next chan int   // how many opens; closed: end
	done chan error // one per batch
}

func startOpener(t *testing.T, path string) *opener {
	o := &opener{next: make(chan int), done: make(chan error)}
	tid := make(chan int)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		for n := range o.next {
			var err error
			for j := 0; j < n && err == nil; j++ {
				var fd int
				if fd, err = unix.Open(path, unix.O_RDONLY, 0); err == nil {
					unix.Close(fd)
				}
			}
			o.done <- err
		}
	}()
	o.tid = <-tid
	t.Cleanup(func() { close(o.next) })
	return o
}

func (o *opener) open(t *testing.T, n int) {
	t.Helper()
	o.next <- n
	if err := <-o.done; err != nil {
		t.Fatal(err)
	}
}

func markerFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "top-marker")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIGMapIterCountsPerInterval: a thread opens a file in batches, the
// next batch only once the gadget reported the last one; each fetch's row
// for the thread holds the opens since the previous fetch (the map is
// cleared), so no row exceeds a batch and the rows add up to the total.
func TestIGMapIterCountsPerInterval(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	const batch, batches = 10, 4
	o := startOpener(t, markerFile(t))
	params := gadget.Params{MapFetchIntervalParam: "50ms", "targ_pid": fmt.Sprint(os.Getpid())}
	r := startOnKernel(t, igTopGadget(t), params, func(error) string { return "" })
	rows := func() []map[string]any {
		return r.c.find("opens", func(e map[string]any) bool { return int(num(e["tid"])) == o.tid })
	}
	sum := func() (n float64) {
		for _, e := range rows() {
			n += num(e["opens"])
		}
		return n
	}
	for done := batch; done <= batch*batches; done += batch {
		o.open(t, batch)
		eventually.True(t, 30*time.Second, fmt.Sprintf("the gadget to report %d opens of thread %d", done, o.tid), func() bool { return sum() >= float64(done) })
	}
	st := r.stop(t)
	got := rows()
	if s := sum(); s != batch*batches || len(got) < batches {
		t.Errorf("thread %d: %v opens in %d rows, want %d in at least %d: %v", o.tid, s, len(got), batch*batches, batches, got)
	}
	for _, e := range got {
		if num(e["opens"]) > batch || int(num(e["pid"])) != os.Getpid() || e["comm"] != ownComm(t) {
			t.Errorf("row %v: want at most %d opens (the map is cleared every fetch), pid %d, comm %q", e, batch, os.Getpid(), ownComm(t))
		}
	}
	if s := st.Stats["opens"]; s.Emitted == 0 || s.Lost != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestIGMapIterSortAndMaxEntries: three threads open a file 3, 7 and 5
// times within one fetch (the one Stop makes); sort=-opens and
// max-entries=2 keep the 7 and the 5, in that order.
func TestIGMapIterSortAndMaxEntries(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	path := markerFile(t)
	a, b, d := startOpener(t, path), startOpener(t, path), startOpener(t, path)
	params := gadget.Params{MapFetchIntervalParam: "1h", SortParam: "-opens,tid", MaxEntriesParam: "2", "targ_pid": fmt.Sprint(os.Getpid())}
	c, _ := runWhile(t, igTopGadget(t), params, func() {
		a.open(t, 3)
		b.open(t, 7)
		d.open(t, 5)
	})
	got := c.find("opens", func(map[string]any) bool { return true })
	if len(got) != 2 || int(num(got[0]["tid"])) != b.tid || num(got[0]["opens"]) != 7 || int(num(got[1]["tid"])) != d.tid || num(got[1]["opens"]) != 5 {
		t.Errorf("rows %v; want thread %d with 7 opens, then thread %d with 5", got, b.tid, d.tid)
	}
}

func TestIGMapIterParamErrors(t *testing.T) {
	rt, err := gadget.New(New(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	for params, want := range map[string]gadget.Params{
		`param map-fetch-interval: "1ms" is not a duration of at least 10ms`:                {MapFetchIntervalParam: "1ms"},
		`param map-fetch-count: "-1" is not a whole number of at least 0`:                   {MapFetchCountParam: "-1"},
		`param sort: map iterator opens has no field reads (fields: pid, tid, comm, opens)`: {SortParam: "-reads"},
	} {
		_, err := rt.Info(t.Context(), igTopGadget(t), gadget.RunOptions{Params: want})
		if err == nil || !strings.Contains(err.Error(), params) {
			t.Errorf("params %v: error %v, want %q", want, err, params)
		}
	}
}
