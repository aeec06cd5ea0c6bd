package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
	"github.com/gadgetpm/gadgetpm/packages/igimage"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// gadgetCLI runs the root command with ctx; stdout and stderr separately.
func gadgetCLI(ctx context.Context, args ...string) (string, string, error) {
	var out, errOut testlog.Buffer
	cmd := newRootCommand(&out, &errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

const packagesDir = "../../charts/packages"

func needRootForGadget(t *testing.T) {
	t.Helper()
	testroot.Require(t, "running gadgets")
}

func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestGadgetRunSnapshotFromDirAndPackage(t *testing.T) {
	needRootForGadget(t)
	dir := filepath.Join(packagesDir, "snapshot-process")
	tgz := packTGZ(t, dir, "snapshot-process")
	for _, src := range []string{dir, tgz} {
		out, errOut, err := gadgetCLI(context.Background(), "gadget", "run", src, "--filter", fmt.Sprintf("pid==%d", os.Getpid()))
		if err != nil {
			t.Fatalf("%s: %v\n%s", src, err, errOut)
		}
		lines := jsonLines(t, out)
		if len(lines) != 1 || int(lines[0]["ppid"].(float64)) != os.Getppid() {
			t.Errorf("%s: output %v, want only this process", src, lines)
		}
		if !strings.Contains(errOut, "processes: 1 events") {
			t.Errorf("%s: summary missing from stderr: %q", src, errOut)
		}
	}
}

// TestGadgetRunTracerStopsAtMaxEvents runs without --timeout, so only
// --max-events can end the run; the hang guard cancels it otherwise and the
// test fails on that, whatever the time it took.
func TestGadgetRunTracerStopsAtMaxEvents(t *testing.T) {
	needRootForGadget(t)
	marker := filepath.Join(t.TempDir(), "cli-marker")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opener, stopOpener := context.WithCancel(context.Background())
	defer stopOpener()
	go func() {
		for opener.Err() == nil {
			if f, err := os.Open(marker); err == nil {
				f.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var guarded atomic.Bool
	guard := time.AfterFunc(2*time.Minute, func() { guarded.Store(true); cancel() })
	defer guard.Stop()
	out, errOut, err := gadgetCLI(ctx, "gadget", "run", filepath.Join(packagesDir, "trace-open"),
		"--filter", "fname=="+marker, "--max-events", "2", "-o", "columns")
	guard.Stop()
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if guarded.Load() {
		t.Fatalf("--max-events 2 did not end the run; the hang guard cancelled it\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIMESTAMP") || !strings.Contains(lines[1], marker) || !strings.Contains(lines[2], marker) {
		t.Errorf("columns output: want a header and exactly 2 events of the marker, got:\n%s", out)
	}
	if !strings.Contains(errOut, "gadgetpm: open: 2 events,") {
		t.Errorf("stderr summary: want %q, got %q", "open: 2 events", errOut)
	}
}

func TestGadgetRunStopsWhenCancelled(t *testing.T) {
	needRootForGadget(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel) // what Ctrl-C does
	_, errOut, err := gadgetCLI(ctx, "gadget", "run", filepath.Join(packagesDir, "trace-tcpconnect"), "--param", "target_port=1")
	if err != nil {
		t.Fatalf("cancelled run: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "tcpconnect: 0 events") {
		t.Errorf("stderr %q", errOut)
	}
}

func TestGadgetRunErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"gadget", "run"}, "accepts 1 arg(s), received 0"},
		{[]string{"gadget", "run", "/nonexistent"}, "read gadget: stat /nonexistent: no such file or directory"},
		{[]string{"gadget", "run", "main.go"}, "expected a package directory or a .tgz package"},
		{[]string{"gadget", "run", "."}, "a package keeps its eBPF object in gadget/program.bpf.o"},
		{[]string{"gadget", "run", packagesDir + "/trace-open", "-o", "yaml"}, `--output: output format "yaml": expected json or columns`},
		{[]string{"gadget", "run", packagesDir + "/trace-open", "--param", "oops"}, `--param: param "oops": expected key=value`},
		{[]string{"gadget", "run", packagesDir + "/trace-open", "--timeout", "-1s"}, "--timeout -1s: must not be negative"},
		{[]string{"gadget", "run", packagesDir + "/trace-open", "--param", "failed_only=maybe"}, `param failed_only: "maybe" is not a bool`},
		{[]string{"gadget", "run", packagesDir + "/trace-open", "--filter", "path==/etc"}, `no data source has a field "path"`},
		{[]string{"gadget", "catalog", "/nonexistent"}, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := gadgetCLI(context.Background(), tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestGadgetCatalog(t *testing.T) {
	out, _, err := gadgetCLI(context.Background(), "gadget", "catalog", filepath.Join(packagesDir, "trace-open"))
	if err != nil {
		t.Fatal(err)
	}
	var cat struct {
		DataSources []struct {
			Name   string
			Fields []struct{ Name, Type string }
		}
		Params []struct{ Key, Type, Default string }
	}
	if err := json.Unmarshal([]byte(out), &cat); err != nil {
		t.Fatal(err)
	}
	if len(cat.DataSources) != 1 || cat.DataSources[0].Name != "open" || len(cat.Params) != 1 || cat.Params[0].Key != "failed_only" || cat.Params[0].Default != "false" {
		t.Errorf("catalog %+v", cat)
	}
}

func TestGadgetHelp(t *testing.T) {
	out, _, err := gadgetCLI(context.Background(), "gadget", "run", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--param", "--filter", "--timeout", "--max-events", "--output", "Ctrl-C", "comm==bash", "oci://", "--insecure", "--username", "--password", "GADGETPM_REGISTRY_PASSWORD"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// packTGZ packs dir as helm package would: every file under <name>/.
func packTGZ(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+"-0.1.0.tgz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name + "/" + filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []interface{ Close() error }{tw, zw, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestGadgetRunInspektorGadgetABI runs a gadget written against Inspektor
// Gadget's ABI (bpf/testdata/ig_trace_exec.bpf.c, with its gadget.yaml in
// that project's layout) as a package directory: its param (renamed by
// gadget.yaml) filters in the kernel, and the fields come out typed and
// enriched.
func TestGadgetRunInspektorGadgetABI(t *testing.T) {
	needRootForGadget(t)
	pkg := filepath.Join(t.TempDir(), "ig-trace-exec")
	if err := os.MkdirAll(filepath.Join(pkg, "gadget"), 0o755); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{"ig_trace_exec.bpf.o": "program.bpf.o", "ig_trace_exec.gadget.yaml": "gadget.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../bpf/testdata", from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, "gadget", to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkIGTraceExecRun(t, pkg)
}

// TestGadgetRunInspektorGadgetImage runs an Inspektor Gadget image from
// a registry, `gadget run oci://...:tag --insecure`, as
// TestGadgetRunInspektorGadgetABI runs the same gadget from a package
// directory: same params, filters and typed, enriched fields; then by
// the digest of its manifest under a two-architecture index.
func TestGadgetRunInspektorGadgetImage(t *testing.T) {
	needRootForGadget(t)
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	img := packagetest.IGTraceExec(t)
	reg.Push(t, "trace_exec", "v1.0.0", img)
	other := "arm64"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	index, _ := reg.PushIndex(t, "trace_exec", "v2.0.0", map[string]packagetest.IGImage{runtime.GOARCH: img, other: packagetest.IGTraceExec(t, packagetest.IGLayer{MediaType: igimage.MediaTypeBTFGen, Data: []byte("x")})})
	t.Run("tag", func(t *testing.T) {
		errOut := checkIGTraceExecRun(t, "oci://"+reg.Ref("trace_exec", "v1.0.0"), "--insecure")
		if !strings.Contains(errOut, "running gadget trace_exec") {
			t.Errorf("stderr does not name the gadget trace_exec:\n%s", errOut)
		}
	})
	t.Run("index digest", func(t *testing.T) {
		checkIGTraceExecRun(t, "oci://"+reg.Host+"/gadgets/trace_exec@"+index.Digest.String(), "--insecure")
	})
}

// TestGadgetRunImageErrors: an image reference that cannot run says why.
func TestGadgetRunImageErrors(t *testing.T) {
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	img := packagetest.IGTraceExec(t, packagetest.IGLayer{MediaType: igimage.MediaTypeWasm, Data: []byte("\x00asm")})
	reg.Push(t, "wasm", "v1", img)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"oci://" + reg.Ref("wasm", "v1"), "--insecure"}, "wasm gadgets are not supported"},
		{[]string{"oci://" + reg.Ref("nothere", "v1"), "--insecure"}, "not found in the registry"},
		{[]string{"oci://" + reg.Ref("wasm", "v1")}, "add --insecure"},
		{[]string{"oci://" + reg.Ref("wasm", "v1"), "--insecure", "--username", "u", "--password", "p"}, "credentials are never sent over plain HTTP"},
		{[]string{"oci://trace_exec"}, "want oci://<registry>/<repository>"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := gadgetCLI(context.Background(), append([]string{"gadget", "run"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// checkIGTraceExecRun runs the ig_trace_exec gadget from src while root
// and a target user exec a marker binary, and checks that only the
// target's execs come out, typed and enriched; it returns stderr.
func checkIGTraceExecRun(t *testing.T, src string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(dir, "gpm-igcli")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, b, 0o755); err != nil {
		t.Fatal(err)
	}
	const target = 4545
	// execs by root and by the target user until the run ends: only the
	// target's may come out
	execer, stopExecer := context.WithCancel(context.Background())
	defer stopExecer()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// a pair of execs every 20ms, not a busy loop, until the run ends
		pace := time.NewTicker(20 * time.Millisecond)
		defer pace.Stop()
		for {
			_ = exec.Command(marker).Run()
			cmd := exec.Command(marker)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: target, Gid: target}}
			_ = cmd.Run()
			select {
			case <-execer.Done():
				return
			case <-pace.C:
			}
		}
	}()
	defer wg.Wait()
	defer stopExecer()
	before := time.Now()
	out, errOut, err := gadgetCLI(context.Background(), append([]string{"gadget", "run", src,
		"--param", fmt.Sprintf("uid=%d", target), "--filter", "comm==gpm-igcli", "--max-events", "3", "--timeout", "2m"}, extra...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	lines := jsonLines(t, out)
	if len(lines) != 3 {
		t.Fatalf("want 3 events, got %d:\n%s\n%s", len(lines), out, errOut)
	}
	for _, e := range lines {
		if e["creds.uid"] != float64(target) {
			t.Errorf("event by uid %v passed the param uid=%d: %v", e["creds.uid"], target, e)
		}
		ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e["timestamp_raw"]))
		if err != nil || ts.Before(before.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
			t.Errorf("timestamp_raw %v: want the wall-clock time of the exec (%v)", e["timestamp_raw"], err)
		}
		if _, ok := e["mntns_id"].(float64); !ok {
			t.Errorf("mntns_id %v is not a number", e["mntns_id"])
		}
		if c, ok := e["container"]; !ok || c != "" {
			t.Errorf("not enriched: container = %v (present %v), want empty on the host", c, ok)
		}
		if _, ok := e["error_raw"]; ok {
			t.Errorf("error_raw is hidden by gadget.yaml but printed: %v", e)
		}
	}
	return errOut
}

// TestGadgetRunCPUProfile: the hidden --cpuprofile flag writes a pprof CPU
// profile of the run (gzip-compressed protobuf) for 'go tool pprof'.
func TestGadgetRunCPUProfile(t *testing.T) {
	needRootForGadget(t)
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	_, errOut, err := gadgetCLI(context.Background(), "gadget", "run", filepath.Join(packagesDir, "trace-open"),
		"--param", "failed_only=true", "--timeout", "300ms", "--cpuprofile", prof)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	f, err := os.Open(prof)
	if err != nil {
		t.Fatalf("--cpuprofile %s: %v", prof, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("--cpuprofile %s: not a gzip-compressed pprof profile: %v", prof, err)
	}
	if n, err := io.Copy(io.Discard, zr); err != nil || n == 0 {
		t.Errorf("--cpuprofile %s: %d bytes of profile, err %v; want a non-empty profile", prof, n, err)
	}
	if _, _, err := gadgetCLI(context.Background(), "gadget", "run", filepath.Join(packagesDir, "trace-open"),
		"--timeout", "1ms", "--cpuprofile", filepath.Join(t.TempDir(), "missing", "cpu.prof")); err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Errorf("--cpuprofile in a missing directory: err %v, want one naming --cpuprofile", err)
	}
}
