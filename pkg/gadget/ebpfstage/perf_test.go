package ebpfstage

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// TestIGPerfEventArrayFallback runs ig_trace_exec once with its ring
// buffer and once with Options.PerfEventArray, which takes the path of
// kernels without ring buffers (the map becomes a perf event array, the
// buffer helpers switch to bpf_perf_event_output): both runs must deliver
// the same event for the same exec.
func TestIGPerfEventArrayFallback(t *testing.T) {
	needRoot(t)
	marker := execMarker(t, "gpm-igperf")
	run := func(t *testing.T, opts Options) (map[string]any, string) {
		defer checkNoLeaks(t)()
		var log bytes.Buffer // slog serialises writes; read after the run
		var pid int
		c, res := runWhileWith(t, opts, igGadget(t), gadget.RunOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))}, func() {
			cmd := marker()
			if err := cmd.Run(); err != nil {
				t.Error(err)
				return
			}
			pid = cmd.Process.Pid
		})
		got := c.find("exec", func(e map[string]any) bool { return e["comm"] == "gpm-igperf" })
		if len(got) != 1 {
			t.Fatalf("events of the marker: %v, want one", got)
		}
		if st := res.Stats["exec"]; st.Lost != 0 {
			t.Errorf("stats: %+v", st)
		}
		e := got[0]
		if int(num(e["pid"])) != pid || int(num(e["ppid"])) != os.Getpid() {
			t.Errorf("event %v: want pid %d ppid %d", e, pid, os.Getpid())
		}
		// the same exec, the same fields: only the time differs
		delete(e, "timestamp_raw")
		delete(e, "timestamp") // the formatted twin of timestamp_raw
		delete(e, "pid")
		return e, log.String()
	}
	ring, ringLog := run(t, Options{})
	perf, perfLog := run(t, Options{PerfEventArray: true})
	if strings.Contains(ringLog, "perf event arrays") {
		t.Errorf("the ring-buffer run used perf event arrays:\n%s", ringLog)
	}
	if want := `msg="tracers send records through perf event arrays" gadget=ig-trace-exec reason="Options.PerfEventArray is set"`; !strings.Contains(perfLog, want) {
		t.Errorf("log of the perf run:\n%s\nwant %q", perfLog, want)
	}
	if a, b := jsonOf(t, ring), jsonOf(t, perf); a != b {
		t.Errorf("ring buffer event %s, perf event array event %s", a, b)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
