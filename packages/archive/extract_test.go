package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

type entry = packagetest.Entry

func tgz(t testing.TB, entries ...entry) []byte { return packagetest.TGZ(t, entries...) }

var good = []entry{
	{Name: "pkg", Typ: tar.TypeDir, Mode: 0o755},
	{Name: "pkg/templates/", Typ: tar.TypeDir, Mode: 0o777},
	{Name: "pkg/Chart.yaml", Body: "Name: pkg\n"},
	{Name: "pkg/hooks/10-startup.sh", Mode: 0o4777, Body: "#!/bin/sh\n"},
	{Name: "pkg/hooks/lib.sh", Mode: 0o666, Body: "x=1\n"},
}

func TestExtractKeepsExecutableBitAndNothingElse(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "out")
	if err := archive.Extract(context.Background(), bytes.NewReader(tgz(t, good...)), dest, archive.Limits{StripComponents: 1}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"Chart.yaml": 0o644, "hooks/10-startup.sh": 0o755, "hooks/lib.sh": 0o644} {
		fi, err := os.Stat(filepath.Join(dest, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode(), want)
		}
	}
	// Extracting again onto an existing destination is refused.
	err := archive.Extract(context.Background(), bytes.NewReader(tgz(t, good...)), dest, archive.Limits{StripComponents: 1})
	if !errors.Is(err, archive.ErrExists) {
		t.Errorf("second extract: %v", err)
	}
}

func TestExtractRejectsBadArchives(t *testing.T) {
	many := []entry{{Name: "pkg/", Typ: tar.TypeDir}}
	for i := 0; i < 100000; i++ {
		many = append(many, entry{Name: fmt.Sprintf("pkg/f%d", i)})
	}
	tests := []struct {
		name    string
		data    []byte
		limits  archive.Limits
		is      error
		wantMsg string
	}{
		{"path traversal", tgz(t, entry{Name: "pkg/../../etc/cron.d/x", Body: "x"}), archive.Limits{}, archive.ErrUnsafePath, `"pkg/../../etc/cron.d/x" has a ".." component`},
		{"absolute path", tgz(t, entry{Name: "/etc/passwd", Body: "x"}), archive.Limits{}, archive.ErrUnsafePath, `"/etc/passwd" has an absolute path`},
		{"symlink escape", tgz(t, entry{Name: "pkg/templates/x", Typ: tar.TypeSymlink, Linkname: "../../../etc/shadow"}), archive.Limits{}, archive.ErrLink, "outside the package"},
		{"absolute symlink", tgz(t, entry{Name: "pkg/x", Typ: tar.TypeSymlink, Linkname: "/etc/shadow"}), archive.Limits{}, archive.ErrLink, "outside the package"},
		{"inside symlink", tgz(t, entry{Name: "pkg/x", Typ: tar.TypeSymlink, Linkname: "Chart.yaml"}), archive.Limits{}, archive.ErrLink, "regular files only"},
		{"hard link escape", tgz(t, entry{Name: "pkg/x", Typ: tar.TypeLink, Linkname: "../etc/shadow"}), archive.Limits{}, archive.ErrLink, "hard link"},
		{"char device", tgz(t, entry{Name: "pkg/null", Typ: tar.TypeChar}), archive.Limits{}, archive.ErrSpecialFile, `"pkg/null" is a device file`},
		{"block device", tgz(t, entry{Name: "pkg/sda", Typ: tar.TypeBlock}), archive.Limits{}, archive.ErrSpecialFile, "device file"},
		{"fifo", tgz(t, entry{Name: "pkg/fifo", Typ: tar.TypeFifo}), archive.Limits{}, archive.ErrSpecialFile, "FIFO"},
		{"100000 files", tgz(t, many...), archive.Limits{}, archive.ErrLimit, "more than 10000 entries"},
		{"file over limit", tgz(t, entry{Name: "pkg/big", Body: strings.Repeat("x", 2048)}), archive.Limits{MaxFileBytes: 1024}, archive.ErrLimit, `"pkg/big" is 2048 bytes, limit 1024`},
		{"total over limit", tgz(t, entry{Name: "pkg/a", Body: strings.Repeat("x", 600)}, entry{Name: "pkg/b", Body: strings.Repeat("x", 600)}), archive.Limits{MaxTotalBytes: 1000}, archive.ErrLimit, "total more than 1000 bytes"},
		{"duplicate entry", tgz(t, entry{Name: "pkg/a", Body: "1"}, entry{Name: "pkg/a", Body: "2"}), archive.Limits{}, archive.ErrUnsafePath, "appears twice"},
		{"file outside top dir", tgz(t, entry{Name: "Chart.yaml", Body: "x"}), archive.Limits{}, archive.ErrUnsafePath, "outside the package's top directory"},
		{"not gzip", []byte("PK\x03\x04 this is a zip"), archive.Limits{}, nil, "not a gzipped tar"},
		{"truncated", tgz(t, good...)[:40], archive.Limits{}, nil, "read tar"},
		{"empty", tgz(t), archive.Limits{}, nil, "archive is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dest := filepath.Join(parent, "out")
			limits := tt.limits
			limits.StripComponents = 1
			err := archive.Extract(context.Background(), bytes.NewReader(tt.data), dest, limits)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want %q", err, tt.wantMsg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v is not %v", err, tt.is)
			}
			// Nothing is left behind: no destination, no temp dir.
			left, _ := os.ReadDir(parent)
			if len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestExtractRejectsHugeSparseFile uses GNU tar to pack a 64 GiB sparse
// file whose archive is a few kilobytes.
func TestExtractRejectsHugeSparseFile(t *testing.T) {
	data := packagetest.SparseTGZ(t, "pkg", "sparse")
	dest := filepath.Join(t.TempDir(), "out")
	err := archive.Extract(context.Background(), bytes.NewReader(data), dest, archive.Limits{StripComponents: 1})
	if !errors.Is(err, archive.ErrLimit) || !strings.Contains(err.Error(), `"pkg/sparse" is 68719476736 bytes`) {
		t.Fatalf("err = %v, want the sparse file refused by size", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Error("destination exists after a failed extract")
	}
}

func TestExtractStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := archive.Extract(ctx, bytes.NewReader(tgz(t, good...)), filepath.Join(t.TempDir(), "out"), archive.Limits{StripComponents: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestReadFile(t *testing.T) {
	big := strings.Repeat("x", 2048)
	tests := []struct {
		name    string
		entries []entry
		limits  archive.Limits
		want    string
		wantErr string
	}{
		{"first match below the top directory", good, archive.Limits{StripComponents: 1}, "Name: pkg\n", ""},
		{"a file at the top is not the package's", []entry{{Name: "Chart.yaml", Body: "x"}}, archive.Limits{StripComponents: 1}, "", "file does not exist"},
		{"deeper files do not count", []entry{{Name: "pkg/sub/Chart.yaml", Body: "x"}}, archive.Limits{StripComponents: 1}, "", "file does not exist"},
		{"unsafe names are skipped", []entry{{Name: "pkg/../Chart.yaml", Body: "x"}, {Name: "pkg/Chart.yaml", Body: "ok"}}, archive.Limits{StripComponents: 1}, "ok", ""},
		{"over the file limit", []entry{{Name: "pkg/Chart.yaml", Body: big}}, archive.Limits{StripComponents: 1, MaxFileBytes: 1024}, "", "is 2048 bytes, limit 1024"},
		{"beyond the entry limit", []entry{{Name: "pkg/a"}, {Name: "pkg/b"}, {Name: "pkg/Chart.yaml", Body: "x"}}, archive.Limits{StripComponents: 1, MaxFiles: 2}, "", "file does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := archive.ReadFile(context.Background(), bytes.NewReader(tgz(t, tt.entries...)), "Chart.yaml", tt.limits)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ReadFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := archive.ReadFile(context.Background(), strings.NewReader("not gzip"), "Chart.yaml", archive.Limits{}); err == nil || !strings.Contains(err.Error(), "not a gzipped tar") {
		t.Errorf("not gzip: %v", err)
	}
}
