package ebpfstage

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func sha256File(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// inputsHash is what hack/bpf-build.sh records for an object built from
// src: the sha256 of `sha256sum SRC bpf/include/*/*.h` (C locale).
func inputsHash(t *testing.T, src string) string {
	t.Helper()
	headers, err := filepath.Glob(filepath.Join(repoRoot, "bpf/include/*/*.h"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(headers)
	files := []string{src}
	for _, h := range headers {
		rel, err := filepath.Rel(repoRoot, h)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	var listing strings.Builder
	for _, f := range files {
		fmt.Fprintf(&listing, "%s  %s\n", sha256File(t, f), f)
	}
	return fmt.Sprintf("%x", sha256.Sum256([]byte(listing.String())))
}

// TestObjectsBuiltFromCurrentSources checks bpf/objects.sum, which
// hack/bpf-build.sh writes as it compiles: every committed object under
// bpf/ is listed, the object is the one built (its sha256), and its source
// and the gadget headers are still what it was built from. A source edited
// without `make bpf` fails here.
func TestObjectsBuiltFromCurrentSources(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "bpf/objects.sum"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 4 {
			t.Fatalf("bpf/objects.sum line %d: %q, want: sha256(inputs) sha256(object) object source", n, line)
		}
		inputs, object, obj, src := fields[0], fields[1], fields[2], fields[3]
		listed[obj] = true
		if got := sha256File(t, obj); got != object {
			t.Errorf("%s: sha256 %s, bpf/objects.sum has %s: the object was not written by make bpf", obj, got, object)
		}
		if got := inputsHash(t, src); got != inputs {
			t.Errorf("%s: %s or bpf/include/*/*.h changed since it was built: run make bpf", obj, src)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(repoRoot, "bpf"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() && rel == "bpf/build" {
			return filepath.SkipDir // git-ignored build output
		}
		if !d.IsDir() && strings.HasSuffix(rel, ".o") && !listed[rel] {
			t.Errorf("%s is not in bpf/objects.sum: build it with make bpf (hack/bpf-build.sh)", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
