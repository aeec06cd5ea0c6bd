package enricher

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/gadgettest"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/sink"
)

const (
	hostNS      = 4026531840
	containerNS = 4026532500
	cid         = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100"
)

// fakeProc writes a procfs-like tree: the layout is the kernel's, the
// content chosen by the test (a container cannot be made here).
func fakeProc(t *testing.T) string {
	root := t.TempDir()
	proc := func(pid, ns, comm, cgroup string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("mnt:["+ns+"]", filepath.Join(dir, "ns", "mnt")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644)
	}
	proc("1", "4026531840", "systemd", "0::/init.scope\n")
	proc("812", "4026532500", "nginx", "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-"+cid+".scope\n")
	proc("900", "4026532500", "nginx-worker", "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-"+cid+".scope\n")
	os.MkdirAll(filepath.Join(root, "self"), 0o755) // not a pid
	return root
}

type pods map[string][2]string

func (p pods) Pod(id string) (string, string, bool) {
	v, ok := p[id]
	return v[0], v[1], ok
}

func source(ns ...uint64) *gadgettest.Source {
	return &gadgettest.Source{
		New: func() (*datasource.DataSource, error) {
			ds := datasource.New("open", datasource.TypeTracer)
			_, err := ds.AddField("mntns_id", datasource.KindMntNsID, 8)
			return ds, err
		},
		N: len(ns),
		Fill: func(i int, _ *datasource.DataSource, r *datasource.Record) {
			binary.NativeEndian.PutUint64(r.Raw(), ns[i])
		},
	}
}

func TestEnrich(t *testing.T) {
	var out strings.Builder
	op := New(Options{ProcRoot: fakeProc(t), Pods: pods{cid: {"shop", "web-0"}}})
	rt, _ := gadget.New(source(containerNS, hostNS, 777), op, &sink.Writer{W: &out})
	if _, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	want := `{"mntns_id":4026532500,"container":"` + cid + `","namespace":"shop","pod":"web-0","pid":812,"comm":"nginx"}
{"mntns_id":4026531840,"container":"","namespace":"","pod":"","pid":1,"comm":"systemd"}
{"mntns_id":777,"container":"","namespace":"","pod":"","pid":0,"comm":""}
`
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}

// namedPods also knows container names, as the node's Trace controller does.
type namedPods struct {
	pods
	names map[string]string
}

func (p namedPods) ContainerName(id string) (string, bool) {
	n, ok := p.names[id]
	return n, ok
}

// TestEnrichContainerName: with a resolver that knows container names,
// records of a container also carry its name in the pod.
func TestEnrichContainerName(t *testing.T) {
	var out strings.Builder
	op := New(Options{ProcRoot: fakeProc(t), Pods: namedPods{pods: pods{cid: {"shop", "web-0"}}, names: map[string]string{cid: "nginx"}}})
	rt, _ := gadget.New(source(containerNS, hostNS), op, &sink.Writer{W: &out})
	if _, err := rt.Run(context.Background(), gadget.Gadget{}, gadget.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	want := `{"mntns_id":4026532500,"container":"` + cid + `","namespace":"shop","pod":"web-0","containerName":"nginx","pid":812,"comm":"nginx"}
{"mntns_id":4026531840,"container":"","namespace":"","pod":"","containerName":"","pid":1,"comm":"systemd"}
`
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}

func TestRescanIsRateLimited(t *testing.T) {
	root := fakeProc(t)
	now := time.Unix(1000, 0)
	op := New(Options{ProcRoot: root, Now: func() time.Time { return now }})
	in := &instance{opts: op.opts, byNS: map[uint64]Process{}}
	addProc := func(pid, ns string) {
		os.MkdirAll(filepath.Join(root, pid, "ns"), 0o755)
		os.Symlink("mnt:["+ns+"]", filepath.Join(root, pid, "ns", "mnt"))
	}
	if p, ok := in.lookup(containerNS, 0); !ok || p.Pid != 812 {
		t.Fatalf("first lookup scans: %+v %v", p, ok)
	}
	// a miss right after a scan does not scan again
	addProc("2000", "555")
	if _, ok := in.lookup(555, 0); ok {
		t.Fatal("rescanned within the interval")
	}
	now = now.Add(2 * time.Second)
	if p, ok := in.lookup(555, 0); !ok || p.Pid != 2000 {
		t.Fatalf("after the interval: %+v %v", p, ok)
	}
	// a namespace without processes at the scan that looks for it is
	// remembered as gone and never triggers another scan
	now = now.Add(2 * time.Second)
	if _, ok := in.lookup(777, 0); ok {
		t.Fatal("found a namespace without processes")
	}
	scanned := in.lastScan
	now = now.Add(time.Hour)
	if _, ok := in.lookup(777, 0); ok || in.lastScan != scanned {
		t.Error("a namespace known to be gone triggered a rescan")
	}
}

// TestLookupByEventPid: a namespace first seen right after a scan (a
// container that just started) is known from the event's own pid, without
// waiting for the next scan; a pid in another namespace does not count.
func TestLookupByEventPid(t *testing.T) {
	root := fakeProc(t)
	now := time.Unix(1000, 0)
	op := New(Options{ProcRoot: root, Now: func() time.Time { return now }})
	in := &instance{opts: op.opts, byNS: map[uint64]Process{}}
	if _, ok := in.lookup(containerNS, 0); !ok {
		t.Fatal("first lookup scans")
	}
	dir := filepath.Join(root, "2100")
	os.MkdirAll(filepath.Join(dir, "ns"), 0o755)
	os.Symlink("mnt:[666]", filepath.Join(dir, "ns", "mnt"))
	os.WriteFile(filepath.Join(dir, "comm"), []byte("app\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/kubepods.slice/cri-containerd-"+cid+".scope\n"), 0o644)
	if _, ok := in.lookup(666, 812); ok {
		t.Error("pid 812 lives in another namespace but was taken for 666")
	}
	if p, ok := in.lookup(666, 2100); !ok || p.ContainerID != cid || p.Pid != 2100 {
		t.Errorf("lookup(666, pid 2100) within the rescan interval = %+v %v, want the event's process with container %s", p, ok, cid)
	}
}

// TestLearnedNamespaces: a namespace the Stage learned from its caller's
// /proc scan is attributed to its container within the rescan interval
// even though the event's own process is gone (an exec that ended before
// its event was read); a later scan that no longer has it forgets it.
func TestLearnedNamespaces(t *testing.T) {
	root := fakeProc(t)
	now := time.Unix(1000, 0)
	op := New(Options{ProcRoot: root, Now: func() time.Time { return now }})
	in := &instance{opts: op.opts, learned: op.learned, byNS: map[uint64]Process{}}
	if _, ok := in.lookup(containerNS, 0); !ok {
		t.Fatal("first lookup scans")
	}
	op.Learn(map[uint64]Process{888: {Pid: 3000, Comm: "short", ContainerID: cid}, 889: {}})
	if p, ok := in.lookup(888, 3000); !ok || p.ContainerID != cid {
		t.Errorf("lookup(888) after Learn = %+v %v, want container %s", p, ok, cid)
	}
	if _, ok := in.lookup(889, 0); ok {
		t.Error("a learned namespace without a process was taken")
	}
	op.Learn(map[uint64]Process{})
	if _, ok := op.learned.get(888); ok {
		t.Error("a namespace missing from the latest scan is still learned")
	}
}

func TestContainerID(t *testing.T) {
	tests := []struct{ cgroup, want string }{
		{"0::/system.slice/docker-" + cid + ".scope\n", cid},
		{"12:memory:/docker/" + cid + "\n", cid},
		{"0::/kubepods/besteffort/pod1/" + cid + "\n", cid},
		{"0::/machine.slice/libpod-conmon.scope\n0::/crio-" + cid + ".scope", cid},
		{"0::/user.slice/user-0.slice/session-1.scope\n", ""},
		{"0::/docker-" + cid[:63] + ".scope\n", ""},
		{"garbage", ""},
	}
	for _, tt := range tests {
		if got := ContainerID([]byte(tt.cgroup)); got != tt.want {
			t.Errorf("ContainerID(%q) = %q, want %q", tt.cgroup, got, tt.want)
		}
	}
}

func TestScanRealProc(t *testing.T) {
	link, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Skip("no /proc/self/ns/mnt:", err)
	}
	ns, ok := parseNSLink(link)
	if !ok {
		t.Fatalf("cannot parse %q", link)
	}
	p, ok := Scan("/proc")[ns]
	if !ok || p.Pid == 0 || p.Pid > uint32(os.Getpid()) {
		t.Errorf("own namespace %d: %+v %v (want a process with pid <= ours)", ns, p, ok)
	}
}
