package output

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	return strings.Split(string(b[:len(b)-1]), "\n")
}

func TestFileWritesLines(t *testing.T) {
	dir := t.TempDir()
	f, err := NewFile(FileOptions{Dir: dir, Namespace: "gadget", Name: "mytrace"})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	var want []string
	for i := range 100 {
		buf = append(buf[:0], event(i, 60)...)
		want = append(want, string(buf))
		if err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
		buf[2] = '!' // the caller reuses its slice
	}
	path := filepath.Join(dir, "gadget", "mytrace.jsonl")
	// Lines reach the file at once, before Close.
	if got := readLines(t, path); len(got) != 100 {
		t.Fatalf("%d lines before Close, want 100", len(got))
	}
	for range 2 {
		ref, err := f.Close(context.Background())
		if ref != path || err != nil {
			t.Fatalf("Close() = %q, %v; want %q, nil", ref, err, path)
		}
	}
	if got := readLines(t, path); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("file holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := f.Stats(); st != (Stats{Events: 100}) {
		t.Fatalf("Stats() = %+v, want 100 events", st)
	}
	if err := f.Write(buf); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}

	// A later run appends; a ".jsonl" in the name is not repeated.
	f2, err := NewFile(FileOptions{Dir: dir, Namespace: "gadget", Name: "mytrace.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.Write([]byte(`{"run":2}`)); err != nil {
		t.Fatal(err)
	}
	if ref, err := f2.Close(context.Background()); ref != path || err != nil {
		t.Fatalf("second run Close() = %q, %v; want %q", ref, err, path)
	}
	if got := readLines(t, path); len(got) != 101 || got[100] != `{"run":2}` {
		t.Fatalf("second run did not append: %d lines, last %q", len(got), got[len(got)-1])
	}
}

func TestFileRotation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes int64
		maxFiles int
		events   int
		size     int // bytes per event without newline
	}{
		{"three files", 200, 3, 50, 39},
		{"one file", 200, 1, 30, 39},
		{"exact fit", 160, 2, 21, 39},
		{"event larger than the file", 30, 3, 5, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := NewFile(FileOptions{Dir: dir, Namespace: "ns", Name: "tr", MaxBytes: tc.maxBytes, MaxFiles: tc.maxFiles})
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for i := range tc.events {
				ev := event(i, tc.size)
				if len(ev) != tc.size {
					t.Fatalf("test event has %d bytes, want %d", len(ev), tc.size)
				}
				all = append(all, string(ev))
				if err := f.Write(ev); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "ns", "tr.jsonl")
			entries, err := os.ReadDir(filepath.Join(dir, "ns"))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != tc.maxFiles {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("files %v, want %d", names, tc.maxFiles)
			}
			// Oldest first: .N-1 ... .1, then the current file.
			var got []string
			for i := tc.maxFiles - 1; i >= 0; i-- {
				p := path
				if i > 0 {
					p = path + "." + string(rune('0'+i))
				}
				st, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() > tc.maxBytes && int64(tc.size+1) <= tc.maxBytes {
					t.Fatalf("%s has %d bytes, max %d", p, st.Size(), tc.maxBytes)
				}
				got = append(got, readLines(t, p)...)
			}
			// The kept files hold the newest events, in order.
			want := all[len(all)-len(got):]
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("kept lines\n%s\nwant the newest\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			perFile := max(1, int(tc.maxBytes)/(tc.size+1))
			if minKept := (tc.maxFiles-1)*perFile + 1; len(got) < min(minKept, tc.events) {
				t.Fatalf("kept %d lines, want at least %d", len(got), minKept)
			}
		})
	}
}

func TestFileBadNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts FileOptions
		want string
	}{
		{"slash", FileOptions{Name: "a/b"}, `spec.output "a/b"`},
		{"parent", FileOptions{Name: ".."}, `spec.output ".."`},
		{"parent path", FileOptions{Name: "../../etc/passwd"}, `spec.output "../../etc/passwd"`},
		{"dot", FileOptions{Name: "."}, `spec.output "."`},
		{"empty", FileOptions{Name: ""}, `spec.output ""`},
		{"backslash", FileOptions{Name: `a\b`}, `spec.output "a\\b"`},
		{"nul", FileOptions{Name: "a\x00b"}, `spec.output "a\x00b"`},
		{"too long", FileOptions{Name: strings.Repeat("a", 201)}, "at most 200 characters"},
		{"bad namespace", FileOptions{Name: "tr", Namespace: "../x"}, `namespace "../x"`},
		{"no dir", FileOptions{Name: "tr", Dir: "-"}, "no output directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := tc.opts
			switch opts.Dir {
			case "":
				opts.Dir = dir
			case "-":
				opts.Dir = ""
			}
			if opts.Namespace == "" {
				opts.Namespace = "ns"
			}
			f, err := NewFile(opts)
			if err == nil {
				f.Close(context.Background())
				t.Fatalf("NewFile(%+v) accepted a bad name", opts)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("NewFile created %v for a bad name", entries)
			}
		})
	}
}

func TestFileDoesNotBufferPartialLines(t *testing.T) {
	dir := t.TempDir()
	f, err := NewFile(FileOptions{Dir: dir, Namespace: "ns", Name: "tr"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	big := bytes.Repeat([]byte("y"), 70000)
	ev := append(append([]byte(`{"big":"`), big...), `"}`...)
	if err := f.Write(ev); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, f.Path()); len(got) != 1 || got[0] != string(ev) {
		t.Fatalf("file does not hold the whole line before Close")
	}
}

// TestFileFullDisk writes through a link to /dev/full, a disk that is
// always full: Write fails with an error naming the file, for the caller to
// end the run with.
func TestFileFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("no /dev/full to stand for a full disk: %v", err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ns", "tr.jsonl")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	f, err := NewFile(FileOptions{Dir: dir, Namespace: "ns", Name: "tr"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(context.Background())
	err = f.Write([]byte(`{"a":1}`))
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Write to a full disk: %v; want an error naming %s", err, path)
	}
	if st := f.Stats(); st.Events != 0 {
		t.Fatalf("Stats() = %+v: a failed write counted as an event", st)
	}
}
