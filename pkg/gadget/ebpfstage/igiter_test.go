package ebpfstage

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
)

// igSnapGadget is bpf/testdata/ig_snap_tasks.bpf.o: a snapshotter of
// Inspektor Gadget's ABI with two task iterators, one for processes with
// a user address space, one for kernel threads.
func igSnapGadget(t testing.TB) gadget.Gadget {
	t.Helper()
	return gadget.Gadget{Name: "ig-snap-tasks", Object: testObject(t, "ig_snap_tasks.bpf.o")}
}

func TestIGSnapshotterCatalog(t *testing.T) {
	cat, err := Catalog(igSnapGadget(t).Object, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.DataSources) != 1 || cat.DataSources[0].Name != "tasks" || cat.DataSources[0].Kind != "snapshotter" {
		t.Fatalf("data sources = %+v", cat.DataSources)
	}
	types := map[string]string{}
	for _, f := range cat.DataSources[0].Fields {
		types[f.Name] = f.Type
	}
	for n, ty := range map[string]string{"mntns_id": "mntns_id", "pid": "uint32", "ppid": "uint32", "uid": "uid", "kernel": "uint8", "comm": "string"} {
		if types[n] != ty {
			t.Errorf("field %s type %q, want %q (fields: %v)", n, types[n], ty, types)
		}
	}
}

// TestIGSnapshotterRunsEveryProgramOnce: one run is one snapshot, the
// union of both iterators: this process (from the user-space iterator)
// with its comm, and kthreadd (from the kernel-thread one), each once.
func TestIGSnapshotterRunsEveryProgramOnce(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	c := newCollector()
	rt, err := gadget.New(New(Options{}), enricher.New(enricher.Options{}), c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := rt.Run(ctx, igSnapGadget(t), gadget.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the snapshot did not end the run")
	}
	self := c.find("tasks", func(e map[string]any) bool { return int(num(e["pid"])) == os.Getpid() })
	if len(self) != 1 {
		t.Fatalf("own process listed %d times: %v", len(self), self)
	}
	if e := self[0]; e["comm"] != ownComm(t) || int(num(e["ppid"])) != os.Getppid() || num(e["uid"]) != float64(os.Getuid()) ||
		num(e["kernel"]) != 0 || num(e["mntns_id"]) != float64(ownMntNs(t)) {
		t.Errorf("own process: %v; want comm %q ppid %d uid %d kernel 0 mntns_id %d", e, ownComm(t), os.Getppid(), os.Getuid(), ownMntNs(t))
	}
	// gadget_uid gets its user name beside it, as in a tracer's records
	// (empty where the system has no passwd file, as in the kernel
	// matrix's guests)
	name, ok := self[0]["user"]
	if !ok {
		t.Errorf("own process: no user field beside uid: %v", self[0])
	} else if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil && name != u.Username {
		t.Errorf("own process: user %v, want %q", name, u.Username)
	}
	kthreadd := c.find("tasks", func(e map[string]any) bool { return num(e["pid"]) == 2 })
	if len(kthreadd) != 1 || kthreadd[0]["comm"] != "kthreadd" || num(kthreadd[0]["kernel"]) != 1 {
		t.Errorf("kthreadd (from the second iterator): %v", kthreadd)
	}
	seen := map[float64]bool{}
	for _, e := range c.find("tasks", func(map[string]any) bool { return true }) {
		if seen[num(e["pid"])] {
			t.Errorf("pid %v listed twice", e["pid"])
		}
		seen[num(e["pid"])] = true
	}
	if st := res.Stats["tasks"]; st.Emitted != uint64(len(seen)) {
		t.Errorf("stats %+v, want %d emitted", st, len(seen))
	}
}

func TestIGIterBadMarkers(t *testing.T) {
	snap, top := testObject(t, "ig_snap_tasks.bpf.o"), testObject(t, "ig_top_opens.bpf.o")
	for _, tt := range []struct {
		name string
		obj  []byte
		want string
	}{
		// ELF and BTF string tables share suffixes: a program's name at the
		// end of a marker would be renamed with it
		{"snapshotter naming a missing program", renamed(t, snap, "task_entry___ig_snap_user", "task_entry___ig_snap_usex"),
			"snapshotter tasks: the object has no program ig_snap_usex"},
		{"snapshotter naming a missing struct", renamed(t, snap, "tasks___task_entry___", "tasks___task_entrx___"),
			"snapshotter tasks: the object's BTF has no struct task_entrx"},
		{"map iterator marker without its map", renamed(t, top, "gadget_mapiter_opens___stats", "gadget_mapiter_opens_x_stats"),
			"marker gadget_mapiter_opens_x_stats: expected gadget_mapiter_<name>___<map>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Catalog(tt.obj, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Catalog: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestIGOptionalPrograms: ig_opt_probe has a tracepoint and two optional
// programs no kernel can run (a kprobe and an fentry program on a function
// that does not exist): the run goes on without them, saying so, and the
// tracepoint's events arrive. Without its marker the kprobe fails the run
// with an error naming the program, its section and the kernel.
func TestIGOptionalPrograms(t *testing.T) {
	needRoot(t)
	obj := testObject(t, "ig_opt_probe.bpf.o")
	t.Run("optional programs are skipped", func(t *testing.T) {
		defer checkNoLeaks(t)()
		marker := execMarker(t, "gpm-igopt")
		var log bytes.Buffer // slog serialises writes; read after the run
		logger := slog.New(slog.NewTextHandler(&log, nil))
		c, _ := runWhileWith(t, Options{}, gadget.Gadget{Name: "ig-opt", Object: obj}, gadget.RunOptions{Logger: logger}, func() {
			if err := marker().Run(); err != nil {
				t.Error(err)
			}
		})
		if got := c.find("exec", func(e map[string]any) bool { return e["comm"] == "gpm-igopt" }); len(got) != 1 {
			t.Errorf("events of the tracepoint program: %v, want the marker's exec", got)
		}
		for _, p := range []string{"program=ig_opt_kprobe section=kprobe/gadgetpm_no_such_function", "program=ig_opt_fentry section=fentry/gadgetpm_no_such_function"} {
			want := "skipped an optional program the kernel cannot run\" gadget=ig-opt " + p + " kernel=" + kernelRelease() + " reason="
			if !strings.Contains(log.String(), want) {
				t.Errorf("log:\n%s\nwant a line with %q", log.String(), want)
			}
		}
	})
	t.Run("a required program fails the run", func(t *testing.T) {
		defer checkNoLeaks(t)()
		required := renamed(t, obj, "gadget_program_optional_ig_opt_kprobe", "gadget_program_requires_ig_opt_kprobe")
		rt, err := gadget.New(New(Options{}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = rt.Run(context.Background(), gadget.Gadget{Name: "ig-opt", Object: required}, gadget.RunOptions{})
		for _, want := range []string{"attach program ig_opt_kprobe (section kprobe/gadgetpm_no_such_function)", kernelRelease()} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("run: %v\nwant an error with %q", err, want)
			}
		}
	})
}

// execMarker copies the test binary to a file called name and returns
// commands that run it doing nothing, so that an exec has comm name. Not
// /bin/true: in the kernel matrix's guest it is a busybox applet, which
// answers to no other name; the test binary is static there.
func execMarker(t *testing.T, name string) func() *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), name)
	copyFile(t, self, marker)
	return func() *exec.Cmd { return exec.Command(marker, "-test.run=^$") }
}
