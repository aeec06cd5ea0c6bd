package ebpfstage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
)

// btfgenArchive is a btfgen archive (gzip-compressed tar) of files.
func btfgenArchive(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // megabytes of BTF, under the race detector
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBTFGenStandsInForTheKernelsBTF: on a kernel without BTF of its own
// (KernelHasBTF false), an Inspektor Gadget image's btfgen archive gives
// the kernel types its CO-RE relocations resolve against: the BTF for
// this distribution and kernel loads the gadget, a BTF without the types
// it reads fails it, and an archive without this kernel says which file
// it lacked. On a kernel with BTF the archive is not read at all.
func TestBTFGenStandsInForTheKernelsBTF(t *testing.T) {
	needRoot(t)
	host := gadget.Host{ID: "testos", VersionID: "1.0", Arch: "x86_64", Release: "6.1.0-test"}
	vmlinux, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Skipf("this kernel has no BTF to stand in with: %v", err)
	}
	// a BTF with an int and nothing the gadget reads (no task_struct)
	var b btf.Builder
	if _, err := b.Add(&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}); err != nil {
		t.Fatal(err)
	}
	bare, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		btfgen   []byte
		hasBTF   bool
		want     []string // in the error; none: the gadget runs
		wantNone bool
	}{
		{"this kernel's BTF", btfgenArchive(t, map[string][]byte{host.BTFPath(): vmlinux, "other/1/x86_64/5.4.btf": bare}), false, nil, true},
		{"a BTF without the gadget's types", btfgenArchive(t, map[string][]byte{"./" + host.BTFPath(): bare}), false, []string{"ig-trace-exec", "task_struct"}, false},
		{"no BTF for this kernel", btfgenArchive(t, map[string][]byte{"other/1/x86_64/5.4.btf": bare}), false,
			[]string{"ig-trace-exec", "the kernel has no BTF", "no BTF for this kernel, testos/1.0/x86_64/6.1.0-test.btf"}, false},
		{"not an archive", []byte("junk"), false, []string{"btfgen archive: not gzip-compressed"}, false},
		{"a kernel with BTF ignores it", []byte("junk"), true, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer checkNoLeaks(t)()
			g := igGadget(t)
			g.BTFGen = tt.btfgen
			c := newCollector()
			rt, err := gadget.New(New(Options{KernelHasBTF: func() bool { return tt.hasBTF }, Host: func() (gadget.Host, error) { return host, nil }}), c)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { _, err := rt.Run(ctx, g, gadget.RunOptions{}); done <- err }()
			select {
			case <-c.started:
				cancel()
				err = <-done
			case err = <-done:
			}
			if tt.wantNone {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("the gadget ran")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestReadGadgetKeepsBTFGen: a package directory's gadget/btfgen.bin (an
// image's btfgen layer) reaches the runtime with the gadget.
func TestReadGadgetKeepsBTFGen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trace_exec")
	if err := os.MkdirAll(filepath.Join(dir, "gadget"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{gadget.ObjectFile: testObject(t, "ig_trace_exec.bpf.o"), gadget.BTFGenFile: []byte("archive")} {
		if err := os.WriteFile(filepath.Join(dir, "gadget", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := gadget.ReadGadget(dir)
	if err != nil || string(g.BTFGen) != "archive" {
		t.Fatalf("BTFGen %q, %v", g.BTFGen, err)
	}
}
