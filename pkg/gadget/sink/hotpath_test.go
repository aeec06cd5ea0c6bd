package sink

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/filter"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/gadgettest"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/limiter"
)

// execSource emits n trace_exec events (its layout: timestamp, mntns_id,
// pid, ppid, uid, gid, comm, args) of this process, in this process's mount
// namespace, so that the enricher finds them.
func execSource(tb testing.TB, n int) *gadgettest.Source {
	tb.Helper()
	link, err := os.Readlink("/proc/self/ns/mnt") // mnt:[4026531841]
	if err != nil {
		tb.Skipf("no mount namespace to enrich from: %v", err)
	}
	mntns, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "mnt:["), "]"), 10, 64)
	if err != nil {
		tb.Fatalf("mount namespace link %q: %v", link, err)
	}
	ev := make([]byte, 308)
	binary.NativeEndian.PutUint64(ev[0:], 1_500_000_000)
	binary.NativeEndian.PutUint64(ev[8:], mntns)
	binary.NativeEndian.PutUint32(ev[16:], uint32(os.Getpid()))
	binary.NativeEndian.PutUint32(ev[20:], uint32(os.Getppid()))
	binary.NativeEndian.PutUint32(ev[24:], 1000)
	binary.NativeEndian.PutUint32(ev[28:], 100)
	copy(ev[32:48], "bash")
	copy(ev[48:304], "ls\x00-l\x00/tmp\x00")
	binary.NativeEndian.PutUint32(ev[304:], 12)
	return &gadgettest.Source{
		New: gadgettest.Layout("exec", datasource.TypeTracer,
			datasource.Field{Name: "timestamp", Kind: datasource.KindTimestamp, Offset: 0, Size: 8},
			datasource.Field{Name: "mntns_id", Kind: datasource.KindMntNsID, Offset: 8, Size: 8},
			datasource.Field{Name: "pid", Kind: datasource.KindUint32, Offset: 16, Size: 4},
			datasource.Field{Name: "ppid", Kind: datasource.KindUint32, Offset: 20, Size: 4},
			datasource.Field{Name: "uid", Kind: datasource.KindUID, Offset: 24, Size: 4},
			datasource.Field{Name: "gid", Kind: datasource.KindGID, Offset: 28, Size: 4},
			datasource.Field{Name: "comm", Kind: datasource.KindString, Offset: 32, Size: 16},
			datasource.Field{Name: "args", Kind: datasource.KindStringList, Offset: 48, Size: 256},
			datasource.Field{Name: "args_size", Kind: datasource.KindUint32, Offset: 304, Size: 4, Hidden: true},
		),
		N:    n,
		Fill: func(_ int, _ *datasource.DataSource, r *datasource.Record) { copy(r.Raw(), ev) },
	}
}

// BenchmarkHotPath is what `gadgetpm gadget run charts/packages/trace-exec
// -o json` does per event after the ring buffer: decode into the reused
// record, enrich (container lookup by mount namespace), filter, limit and
// encode a JSON line into the buffered output, as newRuntime wires it.
func BenchmarkHotPath(b *testing.B) {
	for _, bc := range []struct {
		name   string
		params gadget.Params
	}{
		{"all", gadget.Params{}},
		{"filtered", gadget.Params{filter.ParamFilter: "comm==bash,uid!=0"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rt, err := gadget.New(
				execSource(b, b.N),
				enricher.New(enricher.Options{}),
				filter.Stage{},
				limiter.Stage{},
				&Writer{W: io.Discard, Format: FormatJSON, FlushInterval: 100 * time.Millisecond},
			)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			res, err := rt.Run(context.Background(), gadget.Gadget{Name: "bench"}, gadget.RunOptions{Params: bc.params})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if got := res.Stats["exec"].Emitted; got != uint64(b.N) {
				b.Fatalf("%d events written, want %d", got, b.N)
			}
		})
	}
}
