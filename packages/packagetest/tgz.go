package packagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Entry is one entry of a hand-made archive: anything a hostile
// repository could put in a tar.
type Entry struct {
	Name string
	// Typ is the tar type flag; 0 is a regular file.
	Typ byte
	// Mode; 0 is 0644.
	Mode     int64
	Body     string
	Linkname string
}

// TGZ packs entries, in order, as a gzipped tar.
func TGZ(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.Typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.Name, Typeflag: typ, Mode: mode, Size: int64(len(e.Body)), Linkname: e.Linkname}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
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

// SparseTGZ packs top/file, a 64 GiB sparse file, with GNU tar; the
// archive is a few kilobytes. The test is skipped without GNU tar.
func SparseTGZ(t testing.TB, top, file string) []byte {
	t.Helper()
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("GNU tar is not installed: apt-get install tar")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, top)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(src, file))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sparse.tgz")
	if b, err := exec.Command(tarBin, "-C", dir, "-czSf", out, top).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
