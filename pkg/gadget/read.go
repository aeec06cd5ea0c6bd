package gadget

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Files of a gadget inside a package.
const (
	ObjectFile   = "program.bpf.o"
	MetadataFile = "gadget.yaml"
	// BTFGenFile is where an Inspektor Gadget image's btfgen layer is kept
	// (packages/igimage writes it).
	BTFGenFile = "btfgen.bin"
	// maxObjectSize bounds what is read from a package: objects are small,
	// and a hostile archive must not exhaust memory.
	maxObjectSize = 64 << 20
)

// ReadGadget reads a gadget from a package directory (with gadget/), a
// gadget directory itself, or a packed package (.tgz, as helm package
// writes). gadget.yaml is optional; program.bpf.o is required.
func ReadGadget(p string) (Gadget, error) {
	st, err := os.Stat(p)
	if err != nil {
		return Gadget{}, fmt.Errorf("read gadget: %w", err)
	}
	if st.IsDir() {
		return readDir(p)
	}
	if strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz") {
		return readArchive(p)
	}
	return Gadget{}, fmt.Errorf("read gadget %s: expected a package directory or a .tgz package", p)
}

func readDir(dir string) (Gadget, error) {
	name := filepath.Base(filepath.Clean(dir))
	gdir := filepath.Join(dir, "gadget")
	if _, err := os.Stat(filepath.Join(gdir, ObjectFile)); err != nil {
		gdir = dir
	}
	obj, err := readLimited(filepath.Join(gdir, ObjectFile))
	if err != nil {
		return Gadget{}, fmt.Errorf("read gadget %s: %w (a package keeps its eBPF object in gadget/%s)", dir, err, ObjectFile)
	}
	md, err := readLimited(filepath.Join(gdir, MetadataFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Gadget{}, fmt.Errorf("read gadget %s: %w", dir, err)
	}
	btfgen, err := readLimited(filepath.Join(gdir, BTFGenFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Gadget{}, fmt.Errorf("read gadget %s: %w", dir, err)
	}
	return Gadget{Name: name, Object: obj, Metadata: md, BTFGen: btfgen}, nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxObjectSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxObjectSize {
		return nil, fmt.Errorf("%s is larger than %d MiB", p, maxObjectSize>>20)
	}
	return b, nil
}

func readArchive(p string) (Gadget, error) {
	f, err := os.Open(p)
	if err != nil {
		return Gadget{}, fmt.Errorf("read gadget: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return Gadget{}, fmt.Errorf("read gadget %s: not a gzip archive: %w", p, err)
	}
	tr := tar.NewReader(zr)
	g := Gadget{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Gadget{}, fmt.Errorf("read gadget %s: %w", p, err)
		}
		// <chart>/gadget/<file>
		parts := strings.Split(path.Clean(h.Name), "/")
		if len(parts) != 3 || parts[1] != "gadget" || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > maxObjectSize {
			return Gadget{}, fmt.Errorf("read gadget %s: %s is larger than %d MiB", p, h.Name, maxObjectSize>>20)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxObjectSize))
		if err != nil {
			return Gadget{}, fmt.Errorf("read gadget %s: %s: %w", p, h.Name, err)
		}
		switch parts[2] {
		case ObjectFile:
			g.Object, g.Name = b, parts[0]
		case MetadataFile:
			g.Metadata = b
		}
	}
	if g.Object == nil {
		return Gadget{}, fmt.Errorf("read gadget %s: the package has no <chart>/gadget/%s", p, ObjectFile)
	}
	return g, nil
}
