package ebpfstage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testroot"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
)

const repoRoot = "../../.."

func loadPackage(t testing.TB, pkg string) gadget.Gadget {
	t.Helper()
	dir := filepath.Join(repoRoot, "charts/packages", pkg, "gadget")
	obj, err := os.ReadFile(filepath.Join(dir, "program.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "gadget.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return gadget.Gadget{Name: pkg, Object: obj, Metadata: md}
}

func testObject(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "bpf/testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func needRoot(t testing.TB) {
	t.Helper()
	testroot.Require(t, "loading eBPF programs")
}

// collector is a stage that keeps every record of every data source as
// a decoded JSON object and signals when all stages have started.
type collector struct {
	failAt  string
	mu      sync.Mutex
	events  map[string][]map[string]any
	started chan struct{}
}

func newCollector() *collector {
	return &collector{events: map[string][]map[string]any{}, started: make(chan struct{})}
}

func (c *collector) Name() string  { return "collector" }
func (c *collector) Priority() int { return 1000 }
func (c *collector) Instantiate(gctx *gadget.Context, _ gadget.Params) (gadget.StageInstance, error) {
	if c.failAt == "instantiate" {
		return nil, errors.New("injected at instantiate")
	}
	for _, ds := range gctx.DataSources() {
		ds.Subscribe("collector", 1000, func(ds *datasource.DataSource, r *datasource.Record) error {
			var m map[string]any
			if err := json.Unmarshal(ds.AppendJSON(nil, r, datasource.Clock{}), &m); err != nil {
				return err
			}
			c.mu.Lock()
			c.events[ds.Name()] = append(c.events[ds.Name()], m)
			c.mu.Unlock()
			return nil
		})
	}
	return c, nil
}
func (c *collector) step(s string) error {
	if c.failAt == s {
		return fmt.Errorf("injected at %s", s)
	}
	return nil
}
func (c *collector) PreStart(*gadget.Context) error { return c.step("prestart") }
func (c *collector) Start(*gadget.Context) error {
	if err := c.step("start"); err != nil {
		return err
	}
	close(c.started)
	return nil
}
func (c *collector) Stop(*gadget.Context) error     { return c.step("stop") }
func (c *collector) PostStop(*gadget.Context) error { return c.step("poststop") }
func (c *collector) Close(*gadget.Context) error    { return c.step("close") }

func (c *collector) find(ds string, match func(map[string]any) bool) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, e := range c.events[ds] {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// runWhile starts g, runs trigger once every stage started, then stops
// the run (which drains the ring buffers) and returns the collected events.
func runWhile(t *testing.T, g gadget.Gadget, params gadget.Params, trigger func()) (*collector, *gadget.Result) {
	t.Helper()
	return runWhileWith(t, Options{}, g, gadget.RunOptions{Params: params}, trigger)
}

// runWhileWith is runWhile with the stage's options and the run's.
func runWhileWith(t *testing.T, opts Options, g gadget.Gadget, ro gadget.RunOptions, trigger func()) (*collector, *gadget.Result) {
	t.Helper()
	c := newCollector()
	// with the enricher: it grows records beyond the event struct
	rt, err := gadget.New(New(opts), enricher.New(enricher.Options{}), c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		res *gadget.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := rt.Run(ctx, g, ro)
		done <- out{res, err}
	}()
	select {
	case <-c.started:
	case o := <-done:
		t.Fatalf("run ended before starting: %v", o.err)
	case <-time.After(30 * time.Second):
		t.Fatal("gadget did not start within 30s")
	}
	trigger()
	cancel()
	o := <-done
	if o.err != nil {
		t.Fatalf("run: %v", o.err)
	}
	return c, o.res
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func TestTraceExecSeesMarkerBinary(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	marker := filepath.Join(t.TempDir(), "gpm-marker-x")
	copyFile(t, "/bin/true", marker)

	var pid int
	c, res := runWhile(t, loadPackage(t, "trace-exec"), nil, func() {
		cmd := exec.Command(marker, "first-arg", "second arg")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pid = cmd.Process.Pid
	})
	got := c.find("exec", func(e map[string]any) bool { return e["comm"] == "gpm-marker-x" })
	if len(got) != 1 {
		t.Fatalf("want 1 exec event of the marker, got %v", got)
	}
	e := got[0]
	if int(num(e["pid"])) != pid || int(num(e["ppid"])) != os.Getpid() || num(e["uid"]) != float64(os.Getuid()) {
		t.Errorf("event %v: want pid %d ppid %d uid %d", e, pid, os.Getpid(), os.Getuid())
	}
	if want := marker + " first-arg second arg"; e["args"] != want {
		t.Errorf("args = %q, want %q", e["args"], want)
	}
	if c, ok := e["container"]; !ok || c != "" {
		t.Errorf("enricher: container = %v, want empty on the host", c)
	}
	if _, ok := e["args_size"]; ok {
		t.Errorf("hidden field args_size printed: %v", e)
	}
	if st := res.Stats["exec"]; st.Emitted == 0 || st.Lost != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestTraceExecParamTargetUID(t *testing.T) {
	needRoot(t)
	marker := markerForAnyUser(t, "gpm-uidmark")
	const target = 4242
	c, _ := runWhile(t, loadPackage(t, "trace-exec"), gadget.Params{"target_uid": fmt.Sprint(target)}, func() {
		if err := exec.Command(marker, "as-root").Run(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(marker, "as-target")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: target, Gid: target}}
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
	})
	byArg := func(arg string) []map[string]any {
		return c.find("exec", func(e map[string]any) bool {
			return e["comm"] == "gpm-uidmark" && e["args"] == marker+" "+arg
		})
	}
	if got := byArg("as-target"); len(got) != 1 || num(got[0]["uid"]) != target {
		t.Errorf("target_uid=%d: exec by uid %d: %v, want exactly one event with that uid", target, target, got)
	}
	if got := byArg("as-root"); len(got) != 0 {
		t.Errorf("target_uid=%d still reported root's exec: %v", target, got)
	}
}

func TestTraceOpen(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	dir := t.TempDir()
	present := filepath.Join(dir, "marker-present")
	missing := filepath.Join(dir, "marker-missing")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	trigger := func() {
		f, err := os.Open(present)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := os.Open(missing); err == nil {
			t.Fatal("opened a missing file")
		}
	}
	byName := func(c *collector, name string) []map[string]any {
		return c.find("open", func(e map[string]any) bool {
			return e["fname"] == name && int(num(e["pid"])) == os.Getpid()
		})
	}

	c, _ := runWhile(t, loadPackage(t, "trace-open"), nil, trigger)
	ok, bad := byName(c, present), byName(c, missing)
	if comm := ownComm(t); len(ok) == 1 && ok[0]["comm"] != comm {
		t.Errorf("open of the present marker: comm = %v, want %q", ok[0]["comm"], comm)
	}
	if len(ok) != 1 || num(ok[0]["ret"]) < 0 || int(num(ok[0]["flags"]))&0x80000 == 0 {
		t.Errorf("open of the present marker: %v (want ret >= 0, O_CLOEXEC in flags)", ok)
	}
	if len(bad) != 1 || num(bad[0]["ret"]) != -2 {
		t.Errorf("open of the missing marker: %v (want ret -2)", bad)
	}

	c, _ = runWhile(t, loadPackage(t, "trace-open"), gadget.Params{"failed_only": "true"}, trigger)
	if ok, bad := byName(c, present), byName(c, missing); len(ok) != 0 || len(bad) != 1 {
		t.Errorf("failed_only=true: successful opens %v, failed opens %v; want 0 and 1", ok, bad)
	}
}

func TestTraceTCPConnect(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	listen := func() (net.Listener, int) {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, l.Addr().(*net.TCPAddr).Port
	}
	_, p1 := listen()
	_, p2 := listen()
	dial := func(port int) {
		conn, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	toPort := func(c *collector, port int) []map[string]any {
		return c.find("tcpconnect", func(e map[string]any) bool {
			return int(num(e["dport"])) == port && int(num(e["pid"])) == os.Getpid()
		})
	}

	c, _ := runWhile(t, loadPackage(t, "trace-tcpconnect"), nil, func() { dial(p1); dial(p2) })
	got := toPort(c, p1)
	if len(got) != 1 || got[0]["daddr"] != "127.0.0.1" || got[0]["saddr"] != "127.0.0.1" || got[0]["comm"] != ownComm(t) {
		t.Errorf("connect to %d: %v (want daddr and saddr 127.0.0.1, comm %q)", p1, got, ownComm(t))
	}
	if len(toPort(c, p2)) != 1 {
		t.Errorf("connect to %d not seen", p2)
	}

	c, _ = runWhile(t, loadPackage(t, "trace-tcpconnect"), gadget.Params{"target_port": fmt.Sprint(p2)}, func() { dial(p1); dial(p2) })
	if a, b := toPort(c, p1), toPort(c, p2); len(a) != 0 || len(b) != 1 {
		t.Errorf("target_port=%d: saw %d connects to %d and %d to %d; want 0 and 1", p2, len(a), p1, len(b), p2)
	}
}

func TestSnapshotProcessShowsOwnProcess(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	c := newCollector()
	rt, _ := gadget.New(New(Options{}), enricher.New(enricher.Options{}), c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// the snapshot ends the run by itself
	if _, err := rt.Run(ctx, loadPackage(t, "snapshot-process"), gadget.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("snapshot did not end the run")
	}
	comm := ownComm(t)
	self := c.find("processes", func(e map[string]any) bool { return int(num(e["pid"])) == os.Getpid() })
	if len(self) != 1 || int(num(self[0]["ppid"])) != os.Getppid() || self[0]["comm"] != comm || num(self[0]["uid"]) != float64(os.Getuid()) {
		t.Fatalf("own process: %v (want ppid %d comm %q uid %d)", self, os.Getppid(), comm, os.Getuid())
	}
	if bad := c.find("processes", func(e map[string]any) bool { return num(e["pid"]) <= 0 || e["comm"] == "" }); len(bad) != 0 {
		t.Errorf("%d garbled entries, e.g. %v", len(bad), bad[0])
	}
	if n := len(c.find("processes", func(map[string]any) bool { return true })); n < 3 {
		t.Errorf("only %d processes", n)
	}
	kthreads := func(c *collector) int { // kthreadd is pid 2, parent of kernel threads
		return len(c.find("processes", func(e map[string]any) bool { return num(e["ppid"]) == 2 }))
	}
	if kthreads(c) == 0 {
		t.Fatal("no kernel threads listed by default")
	}
	c2 := newCollector()
	rt2, _ := gadget.New(New(Options{}), c2)
	if _, err := rt2.Run(ctx, loadPackage(t, "snapshot-process"), gadget.RunOptions{Params: gadget.Params{"show_kernel_threads": "false"}}); err != nil {
		t.Fatal(err)
	}
	if n := kthreads(c2); n != 0 {
		t.Errorf("show_kernel_threads=false still listed %d kernel threads", n)
	}
}

func TestLoadErrorsAreClearAndLeakNothing(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name   string
		g      gadget.Gadget
		params gadget.Params
		want   []string
	}{
		{"malformed object", gadget.Gadget{Name: "junk", Object: []byte("\x7fELF but not really")}, nil,
			[]string{"gadget junk: read program.bpf.o (expected an eBPF ELF object"}},
		{"empty object", gadget.Gadget{Name: "empty", Object: []byte{}}, nil, []string{"gadget empty: program.bpf.o is empty"}},
		{"no BTF", gadget.Gadget{Name: "nobtf", Object: testObject(t, "no_btf.bpf.o")}, nil, []string{"nobtf", "no BTF", "clang -g"}},
		{"verifier rejects", gadget.Gadget{Name: "bad", Object: testObject(t, "verifier_reject.bpf.o")}, nil,
			[]string{"prestart stage ebpf: load gadget bad: the kernel verifier refused program unchecked_lookup", "invalid mem access 'map_value_or_null'"}},
		{"attach fails", gadget.Gadget{Name: "ba", Object: testObject(t, "bad_attach.bpf.o")}, nil,
			[]string{"start stage ebpf: attach program missing (section tracepoint/gadgetpm/no_such_event)"}},
		{"param out of range", loadPackage(t, "trace-tcpconnect"), gadget.Params{"target_port": "70000"}, []string{`param target_port: "70000" is not a uint16 (0 to 65535)`}},
		{"param not a bool", loadPackage(t, "trace-open"), gadget.Params{"failed_only": "yes please"}, []string{`param failed_only: "yes please" is not a bool`}},
		{"unknown param", loadPackage(t, "trace-open"), gadget.Params{"failed": "true"}, []string{"unknown param failed (this gadget accepts: failed_only)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer checkNoLeaks(t)()
			rt, _ := gadget.New(New(Options{}), newCollector())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := rt.Run(ctx, tt.g, gadget.RunOptions{Params: tt.params})
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestFailureAtEveryStepLeaksNothing(t *testing.T) {
	needRoot(t)
	for _, step := range []string{"instantiate", "prestart", "start", "stop", "poststop", "close"} {
		t.Run(step, func(t *testing.T) {
			defer checkNoLeaks(t)()
			c := newCollector()
			c.failAt = step
			rt, _ := gadget.New(New(Options{}), c)
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-c.started; cancel() }()
			defer cancel()
			_, err := rt.Run(ctx, gadget.Gadget{Name: "quiet", Object: testObject(t, "second_ok.bpf.o")}, gadget.RunOptions{})
			if err == nil || !strings.Contains(err.Error(), "injected at "+step) {
				t.Fatalf("Run = %v, want the injected failure", err)
			}
		})
	}
}

func TestCatalog(t *testing.T) {
	g := loadPackage(t, "trace-exec")
	cat, err := Catalog(g.Object, g.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.DataSources) != 1 || cat.DataSources[0].Name != "exec" || cat.DataSources[0].Kind != "tracer" {
		t.Fatalf("data sources = %+v", cat.DataSources)
	}
	types := map[string]string{}
	for _, f := range cat.DataSources[0].Fields {
		types[f.Name] = f.Type
	}
	want := map[string]string{"timestamp": "timestamp", "mntns_id": "mntns_id", "pid": "uint32", "ppid": "uint32",
		"uid": "uid", "gid": "gid", "comm": "string", "args": "stringlist"}
	for n, ty := range want {
		if types[n] != ty {
			t.Errorf("field %s type %q, want %q", n, types[n], ty)
		}
	}
	if _, ok := types["args_size"]; ok {
		t.Error("hidden field in catalog")
	}
	if len(cat.Params) != 1 || !reflect.DeepEqual(cat.Params[0], gadget.ParamDesc{Key: "target_uid", Type: "uint32", Default: "4294967295",
		Description: "Report only execs by this user id; 4294967295 reports every user."}) {
		t.Errorf("params = %+v", cat.Params)
	}

	snap := loadPackage(t, "snapshot-process")
	cat, err = Catalog(snap.Object, snap.Metadata)
	if err != nil || cat.DataSources[0].Kind != "snapshotter" || cat.Params[0].Default != "true" || cat.Params[0].Type != "bool" {
		t.Errorf("snapshot catalog = %+v, %v", cat, err)
	}
}

func TestCatalogRejectsBadMetadata(t *testing.T) {
	obj := loadPackage(t, "trace-open").Object
	tests := []struct{ yaml, want string }{
		{"datasources: {nope: {}}", "datasources.nope: the object declares no such data source"},
		{"datasources: {open: {fields: {path: {}}}}", "datasources.open.fields.path: the event struct has no such member"},
		{"datasources: {open: {fields: {fname: {kind: blob}}}}", `datasources.open.fields.fname.kind: unknown field kind "blob"`},
		{"datasources: {open: {fields: {pid: {kind: stringlist}}}}", "stringlist needs a char array, the member is uint32"},
		{"datasources: {open: {fields: {pid: {kind: timestamp}}}}", "member of 4 bytes cannot be timestamp"},
		{"params: {failed: {}}", "params.failed: the object declares no such param"},
		{"descripton: typo", "field descripton not found"},
		{"[not a map", "parse gadget.yaml"},
	}
	for _, tt := range tests {
		if _, err := Catalog(obj, []byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Catalog(%q) = %v, want %q", tt.yaml, err, tt.want)
		}
	}
	if _, err := Catalog(obj, nil); err != nil {
		t.Errorf("gadget.yaml is optional: %v", err)
	}
}

func TestPackagedObjectsMatchSources(t *testing.T) {
	for pkg, src := range map[string]string{"trace-exec": "trace_exec", "trace-open": "trace_open",
		"trace-tcpconnect": "trace_tcpconnect", "snapshot-process": "snapshot_process"} {
		a, err := os.ReadFile(filepath.Join(repoRoot, "bpf/gadgets", src, "program.bpf.o"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, loadPackage(t, pkg).Object) {
			t.Errorf("charts/packages/%s/gadget/program.bpf.o differs from bpf/gadgets/%s: run make bpf", pkg, src)
		}
	}
}

// ownComm is this process's comm as the kernel reports it.
func ownComm(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// markerForAnyUser copies /bin/true to a file named name that other uids
// can reach and run: the test's directory and its per-test parent are
// opened up.
func markerForAnyUser(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(dir, name)
	copyFile(t, "/bin/true", marker)
	return marker
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// kernelObjects counts this process's file descriptors for eBPF programs,
// maps, links and perf events (kprobe and tracepoint attachments).
func kernelObjects(t testing.TB) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(target, "anon_inode:bpf") || strings.Contains(target, "perf_event") {
			n[target]++
		}
	}
	return n
}

// checkNoLeaks returns a function that fails the test when more eBPF
// objects are open than when it was called.
func checkNoLeaks(t *testing.T) func() {
	before := kernelObjects(t)
	return func() {
		after := kernelObjects(t)
		for k, v := range after {
			if v > before[k] {
				t.Errorf("leaked %d %s file descriptors", v-before[k], k)
			}
		}
	}
}
