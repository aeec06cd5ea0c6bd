package ebpfstage

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// igGadget is bpf/testdata/ig_trace_exec.bpf.o, written against
// Inspektor Gadget's ABI (bpf/include/igabi/gadget.h), with its gadget.yaml
// in Inspektor Gadget's layout.
func igGadget(t testing.TB) gadget.Gadget {
	t.Helper()
	return gadget.Gadget{Name: "ig-trace-exec", Object: testObject(t, "ig_trace_exec.bpf.o"), Metadata: testObject(t, "ig_trace_exec.gadget.yaml")}
}

// ownMntNs is the inode number of this process's mount namespace.
func ownMntNs(t testing.TB) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/mnt", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestIGTracerCatalog(t *testing.T) {
	g := igGadget(t)
	cat, err := Catalog(g.Object, g.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.DataSources) != 1 || cat.DataSources[0].Name != "exec" || cat.DataSources[0].Kind != "tracer" {
		t.Fatalf("data sources = %+v", cat.DataSources)
	}
	types, descs := map[string]string{}, map[string]string{}
	for _, f := range cat.DataSources[0].Fields {
		types[f.Name], descs[f.Name] = f.Type, f.Description
	}
	// special types by typedef name; nested structs flattened
	want := map[string]string{"timestamp_raw": "timestamp", "mntns_id": "mntns_id", "pid": "uint32", "ppid": "uint32",
		"creds.uid": "uid", "creds.gid": "gid", "comm": "string"}
	for n, ty := range want {
		if types[n] != ty {
			t.Errorf("field %s type %q, want %q (fields: %v)", n, types[n], ty, types)
		}
	}
	if _, ok := types["error_raw"]; ok {
		t.Error("error_raw has columns.hidden: true in gadget.yaml but is in the catalog")
	}
	bare, err := Catalog(g.Object, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range bare.DataSources[0].Fields {
		if f.Name == "error_raw" && f.Type != "errno" {
			t.Errorf("error_raw (gadget_errno) has type %q, want errno", f.Type)
		}
	}
	if descs["comm"] != "Command name after the exec." || descs["creds.uid"] != "User id." {
		t.Errorf("descriptions from annotations: %v", descs)
	}
	params := map[string]gadget.ParamDesc{}
	for _, p := range cat.Params {
		params[p.Key] = p
	}
	if p := params["uid"]; !reflect.DeepEqual(p, gadget.ParamDesc{Key: "uid", Type: "uint32", Default: "4294967295",
		Description: "Report only execs by this user id; 4294967295 reports every user."}) {
		t.Errorf("param uid (targ_uid renamed by params.ebpf.targ_uid.key) = %+v; all: %+v", p, cat.Params)
	}
	if _, ok := params["targ_uid"]; ok {
		t.Errorf("param targ_uid still offered under the variable's name: %+v", cat.Params)
	}
	if p, ok := params[MntNsParam]; !ok || p.Type != "string" {
		t.Errorf("the mount-namespace filter's param %s is missing: %+v", MntNsParam, cat.Params)
	}
}

func TestIGTracerRunsWithParamAndEnrichment(t *testing.T) {
	needRoot(t)
	defer checkNoLeaks(t)()
	marker := markerForAnyUser(t, "gpm-igmark")
	const target = 4343
	var pid int
	c, res := runWhile(t, igGadget(t), gadget.Params{"uid": fmt.Sprint(target)}, func() {
		if err := exec.Command(marker).Run(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(marker)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: target, Gid: target + 1}}
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pid = cmd.Process.Pid
	})
	got := c.find("exec", func(e map[string]any) bool { return e["comm"] == "gpm-igmark" })
	if len(got) != 1 {
		t.Fatalf("uid=%d: want only the exec by uid %d, got %v", target, target, got)
	}
	e := got[0]
	if int(num(e["pid"])) != pid || int(num(e["ppid"])) != os.Getpid() || num(e["creds.uid"]) != target || num(e["creds.gid"]) != target+1 {
		t.Errorf("event %v: want pid %d ppid %d creds.uid %d creds.gid %d", e, pid, os.Getpid(), target, target+1)
	}
	if num(e["mntns_id"]) != float64(ownMntNs(t)) {
		t.Errorf("mntns_id = %v, want this process's %d", e["mntns_id"], ownMntNs(t))
	}
	if c, ok := e["container"]; !ok || c != "" {
		t.Errorf("enricher: container = %v (present %v), want empty on the host", c, ok)
	}
	if _, ok := e["error_raw"]; ok {
		t.Errorf("field hidden by columns.hidden printed: %v", e)
	}
	if st := res.Stats["exec"]; st.Emitted == 0 || st.Lost != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// TestIGMntNsFilter runs an exec in this mount namespace and one in a new
// one: the filter map, filled from the mntns param, lets the kernel drop
// the other namespace's event.
func TestIGMntNsFilter(t *testing.T) {
	needRoot(t)
	marker := filepath.Join(t.TempDir(), "gpm-nsmark")
	copyFile(t, "/bin/true", marker)
	own := ownMntNs(t)
	tests := []struct {
		name                string
		params              gadget.Params
		wantHost, wantNewNS bool
	}{
		{"no filter", nil, true, true},
		{"this namespace", gadget.Params{MntNsParam: fmt.Sprint(own)}, true, false},
		{"another namespace", gadget.Params{MntNsParam: "1, 2"}, false, false},
		{"none", gadget.Params{MntNsParam: MntNsNone}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := runWhile(t, igGadget(t), tt.params, func() {
				cmd := exec.Command(marker, "new-ns")
				cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
				if err := exec.Command(marker, "host").Run(); err != nil {
					t.Fatal(err)
				}
			})
			var host, other int
			for _, e := range c.find("exec", func(e map[string]any) bool { return e["comm"] == "gpm-nsmark" }) {
				if num(e["mntns_id"]) == float64(own) {
					host++
				} else {
					other++
				}
			}
			if (host == 1) != tt.wantHost || (other == 1) != tt.wantNewNS || host > 1 || other > 1 {
				t.Errorf("params %v: %d events from this mount namespace, %d from a new one; want host %v, new %v", tt.params, host, other, tt.wantHost, tt.wantNewNS)
			}
		})
	}
}

// renamed returns obj with every occurrence of from (a symbol name or part
// of one) replaced by to, of the same length: the ELF and BTF string
// tables then name another map, struct or marker.
func renamed(t *testing.T, obj []byte, from, to string) []byte {
	t.Helper()
	if len(from) != len(to) || !bytes.Contains(obj, []byte(from)) {
		t.Fatalf("cannot rename %q to %q in the object", from, to)
	}
	return bytes.ReplaceAll(obj, []byte(from), []byte(to))
}

func TestIGBadInputs(t *testing.T) {
	g := igGadget(t)
	tests := []struct {
		name    string
		obj, md []byte
		want    string
	}{
		{"marker naming a missing map", renamed(t, g.Object, "___events___", "___evenxs___"), nil,
			"tracer exec: the object has no map evenxs"},
		{"marker naming a missing struct", renamed(t, g.Object, "exec___events___event", "exec___events___evenx"), nil,
			"tracer exec: the object's BTF has no struct evenx"},
		{"no known markers", renamed(t, renamed(t, g.Object, "gadget_tracer_", "gadget_tracex_"), "gadget_param_", "gadget_paramx"), nil,
			"the object declares no data source"},
		{"field missing from the object", g.Object, []byte("datasources:\n  exec:\n    fields:\n      args:\n        annotations: {description: x}\nparams:\n  ebpf: {}\n"),
			"datasources.exec.fields.args: the event struct has no such member"},
		{"unknown key in a param", g.Object, []byte("params:\n  ebpf:\n    targ_uid:\n      defaultVal: \"1\"\n"),
			"line 4: field defaultVal not found"},
		{"param missing from the object", g.Object, []byte("params:\n  ebpf:\n    uid: {description: x}\n"),
			"params.ebpf.uid: the object declares no such param"},
		{"bad default", g.Object, []byte("params:\n  ebpf:\n    targ_uid: {defaultValue: all}\n"),
			`params.ebpf.targ_uid.defaultValue: param targ_uid: "all" is not a uint32`},
		{"bad columns.hidden", g.Object, []byte("datasources:\n  exec:\n    fields:\n      comm:\n        annotations: {columns.hidden: maybe}\nparams:\n  ebpf: {}\n"),
			`annotations.columns.hidden: "maybe" is not true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Catalog(tt.obj, tt.md)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestIGMntNsParamErrors(t *testing.T) {
	rt, err := gadget.New(New(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Info(t.Context(), igGadget(t), gadget.RunOptions{Params: gadget.Params{MntNsParam: "4026531841,abc"}})
	if want := `param mntns: "abc" is not a mount namespace inode number`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}
