package ebpfstage

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/sink"
)

// fieldsGadget is bpf/testdata/ig_fields_all.bpf.o: tracers of TCP
// connects, kill(2) and generated signals whose records hold every field
// type of Inspektor Gadget's ABI, with its gadget.yaml.
func fieldsGadget(t testing.TB) gadget.Gadget {
	t.Helper()
	return gadget.Gadget{Name: "ig-fields-all", Object: testObject(t, "ig_fields_all.bpf.o"), Metadata: testObject(t, "ig_fields_all.gadget.yaml")}
}

// fieldsWorkload connects to local listeners (IPv4 and, when the host has
// it, IPv6) and sends SIGUSR2 to a child; it returns the ports and the
// child's pid.
type fieldsWorkload struct {
	port4, port6 int // port6 is 0 without IPv6
	child        int
}

func newFieldsWorkload(t *testing.T) *fieldsWorkload {
	t.Helper()
	w := &fieldsWorkload{}
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l4.Close() })
	w.port4 = l4.Addr().(*net.TCPAddr).Port
	if l6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		t.Cleanup(func() { l6.Close() })
		w.port6 = l6.Addr().(*net.TCPAddr).Port
	}
	return w
}

func (w *fieldsWorkload) run(t *testing.T) {
	t.Helper()
	for _, a := range []string{fmt.Sprintf("127.0.0.1:%d", w.port4), fmt.Sprintf("[::1]:%d", w.port6)} {
		if strings.HasSuffix(a, ":0") {
			continue
		}
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.child = cmd.Process.Pid
	// SIGUSR2 ends sleep: the signal is generated and delivered for real
	if err := syscall.Kill(w.child, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

func TestIGFieldTypesFormatted(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	w := newFieldsWorkload(t)
	c, _ := runWhile(t, fieldsGadget(t), nil, func() { w.run(t) })

	mine := func(e map[string]any) bool { return int(num(e["pid"])) == os.Getpid() }
	want := map[string]string{fmt.Sprintf("127.0.0.1:%d", w.port4): "127.0.0.1"}
	if w.port6 != 0 {
		want[fmt.Sprintf("[::1]:%d", w.port6)] = "::1"
	}
	for dst, addr := range want {
		got := c.find("connect", func(e map[string]any) bool { return mine(e) && e["dst"] == dst })
		if len(got) != 1 {
			t.Errorf("connect to %s: want one event with dst %q (an L4 endpoint as ip:port), got %v; all: %v", dst, dst, got, c.find("connect", mine))
			continue
		}
		if got[0]["daddr"] != addr || !strings.HasPrefix(fmt.Sprint(got[0]["src"]), strings.TrimSuffix(dst, fmt.Sprint(":", strings.Split(dst, ":")[len(strings.Split(dst, ":"))-1]))) {
			t.Errorf("connect to %s: daddr %v (want the L3 endpoint %s), src %v (want the same address)", dst, got[0]["daddr"], addr, got[0]["src"])
		}
		if ts := got[0]["timestamp"]; ts == nil || ts != got[0]["timestamp_raw"] {
			t.Errorf("timestamp = %v, want the twin of timestamp_raw (%v)", ts, got[0]["timestamp_raw"])
		}
	}

	kills := c.find("kill", func(e map[string]any) bool { return int(num(e["target"])) == w.child })
	if len(kills) != 1 {
		t.Fatalf("kill(%d): want one event, got %v", w.child, kills)
	}
	k := kills[0]
	if k["syscall"] != "kill" || k["sig"] != "SIGUSR2" || k["user"] != "root" || k["group"] != "root" || num(k["uid"]) != 0 {
		t.Errorf("kill event %v: want syscall kill, sig SIGUSR2, uid 0 with user root and group root", k)
	}
	if _, ok := k["syscall_raw"]; !ok {
		t.Errorf("kill event %v: syscall_raw missing from JSON (only column output leaves raw fields out)", k)
	}

	sigs := c.find("signal", func(e map[string]any) bool { return int(num(e["target"])) == w.child && e["sig"] == "SIGUSR2" })
	if len(sigs) == 0 {
		t.Fatalf("signal to %d: no event", w.child)
	}
	s := sigs[0]
	kstack := fmt.Sprint(s["kstack"])
	if !strings.HasPrefix(kstack, "[0]") || !strings.Contains(kstack, "sys_kill") {
		t.Errorf("kstack = %q: want the symbolised frames of kill(2) (a frame in *sys_kill)", kstack)
	}
	// the frames' names or, where the binary has no symbols (a test binary
	// built with -ldflags=-s), addresses: TestIGUserStackSymbolised
	if ustack := fmt.Sprint(s["ustack"]); !strings.HasPrefix(ustack, "[0]") || len(ustack) < 4 {
		t.Errorf("ustack = %q: want the user stack's frames", ustack)
	}
}

func TestIGFieldAnnotationsInColumns(t *testing.T) {
	needRoot(t)
	w := newFieldsWorkload(t)
	var out testlog.Buffer
	c := newCollector()
	rt, err := gadget.New(New(Options{}), enricher.New(enricher.Options{}), &sink.Writer{W: &out, Format: sink.FormatColumns, PrefixSource: true}, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := rt.Run(ctx, fieldsGadget(t), gadget.RunOptions{Params: gadget.Params{"ipversion": "4"}})
		done <- err
	}()
	select {
	case <-c.started:
	case err := <-done:
		t.Fatalf("run ended before starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gadget did not start within 30s")
	}
	w.run(t)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := map[string][]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		src, rest, _ := strings.Cut(l, " ")
		lines[src] = append(lines[src], rest)
	}
	if len(lines["connect"]) < 2 {
		t.Fatalf("connect: want a header and rows, output:\n%s", out.String())
	}
	header := lines["connect"][0]
	// columns.hidden, and raw fields whose twin is shown, are left out
	for _, gone := range []string{"TIMESTAMP_RAW", "MNTNS_ID"} {
		if strings.Contains(" "+header+" ", " "+gone+" ") {
			t.Errorf("header %q shows %s", header, gone)
		}
	}
	// the twin timestamp where timestamp_raw is, 31 wide; template pid:
	// right-aligned, 7 wide; template comm: 16 wide; dst: right-aligned,
	// at most 24 wide; daddr: 16 wide
	wantHeader := fmt.Sprintf("%-31s %7s %-16s %-47s %24s %-16s", "TIMESTAMP", "PID", "COMM", "SRC", "DST", "DADDR")
	if !strings.HasPrefix(header, wantHeader) {
		t.Errorf("header %q, want it to start with %q", header, wantHeader)
	}
	dst := fmt.Sprintf("127.0.0.1:%d", w.port4)
	pid, row := fmt.Sprintf(" %7d %-16s ", os.Getpid(), ownComm(t)), fmt.Sprintf(" %24s %-16s ", dst, "127.0.0.1")
	found := false
	for _, l := range lines["connect"][1:] {
		ts, _, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err == nil && len(ts) <= 31 && strings.Contains(l, pid) && strings.Contains(l, row) {
			found = true
		}
	}
	if !found {
		t.Errorf("no connect row with the wall-clock timestamp, %q and %q (pid right-aligned, dst right-aligned to 24):\n%s", pid, row, strings.Join(lines["connect"], "\n"))
	}
	if len(lines["kill"]) < 2 || !strings.Contains(lines["kill"][1], "  SIGUSR2") || !strings.Contains(lines["kill"][1], "kill") {
		t.Errorf("kill rows: want sig right-aligned in 9 columns (\"  SIGUSR2\") and the syscall by name:\n%s", strings.Join(lines["kill"], "\n"))
	}
	for _, l := range lines["signal"][1:] {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(l, "sys_kill") {
			t.Errorf("signal row %q: kstack is cut at columns.maxwidth 30 with an ellipsis; sys_kill lies deeper", l)
		}
	}
	if len(lines["signal"]) < 2 || !strings.Contains(strings.Join(lines["signal"][1:], "\n"), "…") {
		t.Errorf("signal rows: want kstack cut with an ellipsis:\n%s", strings.Join(lines["signal"], "\n"))
	}
}

func TestIGParamValidation(t *testing.T) {
	g := fieldsGadget(t)
	rt, err := gadget.New(New(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := Catalog(g.Object, g.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, ds := range cat.DataSources {
		for _, f := range ds.Fields {
			types[ds.Name+"."+f.Name] = f.Type
		}
	}
	for f, ty := range map[string]string{"connect.dst": "l4endpoint", "connect.daddr": "l3endpoint", "kill.syscall": "syscall",
		"kill.syscall_raw": "syscall", "kill.sig": "signal", "kill.user": "string", "kill.group": "string",
		"signal.kstack": "string", "signal.kstack_raw": "kernel_stack", "signal.ustack_raw": "user_stack"} {
		if types[f] != ty {
			t.Errorf("catalog: field %s type %q, want %q", f, types[f], ty)
		}
	}
	for _, tt := range []struct {
		name   string
		params gadget.Params
		want   string
	}{
		{"outside possibleValues", gadget.Params{"ipversion": "5"}, `gadget ig-fields-all: param ipversion: "5" is not one of the allowed values 0, 4, 6`},
		{"wrong type for the typeHint", gadget.Params{"pid": "1x"}, `gadget ig-fields-all: param pid: "1x" is not a int32 (its typeHint)`},
		{"right hint, wrong variable type", gadget.Params{"pid": "-1"}, `gadget ig-fields-all: param pid: "-1" is not a uint32`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rt.Info(t.Context(), g, gadget.RunOptions{Params: tt.params})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := rt.Info(t.Context(), g, gadget.RunOptions{Params: gadget.Params{"ipversion": "6", "pid": "12"}}); err != nil {
		t.Errorf("allowed values refused: %v", err)
	}
}

func TestIGFieldMetadataErrors(t *testing.T) {
	g := fieldsGadget(t)
	field := func(ann string) []byte {
		return []byte("datasources:\n  connect:\n    fields:\n      dst:\n        annotations: {" + ann + "}\nparams:\n  ebpf: {}\n")
	}
	param := func(p string) []byte { return []byte("params:\n  ebpf:\n    ip_version: {" + p + "}\n") }
	for _, tt := range []struct {
		name string
		md   []byte
		want string
	}{
		{"unknown template", field("template: nodename"), `datasources.connect.fields.dst.annotations.template: unknown template "nodename" (expected one of comm,`},
		{"bad alignment", field("columns.alignment: center"), `datasources.connect.fields.dst.annotations.columns.alignment: "center" is not left or right`},
		{"bad ellipsis", field("columns.ellipsis: both"), `columns.ellipsis: "both" is not one of none, start, middle, end`},
		{"bad width", field("columns.maxwidth: wide"), `columns.maxwidth: "wide" is not a positive number of characters`},
		{"min above max", field("columns.minwidth: 9, columns.maxwidth: 4"), `columns.minwidth 9 is larger than columns.maxwidth 4`},
		{"unknown typeHint", param("typeHint: colour"), `params.ebpf.ip_version.typeHint: unknown type "colour"`},
		{"possible value of the wrong type", param("possibleValues: [\"4\", \"ipv6\"]"), `params.ebpf.ip_version.possibleValues: param ip_version: "ipv6" is not a uint8`},
		{"default outside possibleValues", param("possibleValues: [\"4\", \"6\"], defaultValue: \"0\""), `params.ebpf.ip_version.defaultValue: param ip_version: "0" is not one of the allowed values 4, 6`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Catalog(g.Object, tt.md)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestIGStackNeedsItsMap(t *testing.T) {
	g := fieldsGadget(t)
	_, err := Catalog(renamed(t, g.Object, "ig_kstack", "ig_kstacx"), nil)
	if want := "tracer signal: field kstack_raw (kernel_stack) needs the stack trace map ig_kstack; declare it with GADGET_KERNEL_STACK_MAP"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestIDNamesRereadOnMiss(t *testing.T) {
	dir := t.TempDir()
	write := func(passwd string, mod time.Time) {
		p := filepath.Join(dir, "passwd")
		if err := os.WriteFile(p, []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Unix(1000, 0)
	n := newIDNames([]string{filepath.Join(dir, "missing"), dir}, func() time.Time { return now })
	write("root:x:0:0:root:/root:/bin/sh\n", time.Unix(1, 0))
	if got := n.user(0); got != "root" {
		t.Fatalf("user(0) = %q", got)
	}
	write("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", time.Unix(2, 0))
	if got := n.user(1000); got != "" {
		t.Errorf("user(1000) = %q right after the last read: want the file read at most once a second", got)
	}
	now = now.Add(2 * time.Second)
	if got := n.user(1000); got != "alice" {
		t.Errorf("user(1000) = %q after the file changed: want alice (reread on a miss)", got)
	}
	if got := n.group(0); got != "" {
		t.Errorf("group(0) = %q without a group file", got)
	}
}
