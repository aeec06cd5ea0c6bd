package gadget

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Host names the running kernel as btfhub-archive lays out its BTF files,
// "<ID>/<VERSION_ID>/<arch>/<release>.btf", which an Inspektor Gadget
// image's btfgen archive follows.
type Host struct {
	// ID and VersionID are /etc/os-release's ("ubuntu", "20.04").
	ID, VersionID string
	// Arch is btfhub's name of the machine: x86_64 or arm64.
	Arch string
	// Release is the kernel's (uname -r).
	Release string
}

// BTFPath is the path of h's BTF in a btfgen archive.
func (h Host) BTFPath() string {
	return h.ID + "/" + h.VersionID + "/" + h.Arch + "/" + h.Release + ".btf"
}

// osReleaseFiles are where os-release(5) may be, in its order.
var osReleaseFiles = []string{"/etc/os-release", "/usr/lib/os-release"}

// ThisHost is the Host this process runs on: the kernel from uname(2),
// the distribution from os-release(5).
func ThisHost() (Host, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Host{}, fmt.Errorf("uname: %w", err)
	}
	h := Host{Arch: unix.ByteSliceToString(u.Machine[:]), Release: unix.ByteSliceToString(u.Release[:])}
	if h.Arch == "aarch64" {
		h.Arch = "arm64"
	}
	var data []byte
	var err error
	for _, p := range osReleaseFiles {
		if data, err = os.ReadFile(p); err == nil {
			break
		}
	}
	if err != nil {
		return h, fmt.Errorf("read os-release (%s): %w", strings.Join(osReleaseFiles, ", "), err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			h.ID = v
		case "VERSION_ID":
			h.VersionID = v
		}
	}
	if h.ID == "" {
		return h, errors.New("os-release has no ID")
	}
	return h, nil
}

// KernelBTF returns the BTF of h from btfgen, an Inspektor Gadget
// image's btfgen archive (a gzip-compressed tarball laid out as
// btfhub-archive). The error names the file it looked for.
func KernelBTF(btfgen []byte, h Host) ([]byte, error) {
	want := h.BTFPath()
	zr, err := gzip.NewReader(bytes.NewReader(btfgen))
	if err != nil {
		return nil, fmt.Errorf("btfgen archive: not gzip-compressed: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("btfgen archive has no BTF for this kernel, %s: the gadget supports the kernels btfgen was run for, or a kernel with its own BTF (CONFIG_DEBUG_INFO_BTF)", want)
		}
		if err != nil {
			return nil, fmt.Errorf("btfgen archive: %w", err)
		}
		if strings.TrimPrefix(hdr.Name, "./") != want || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > maxObjectSize {
			return nil, fmt.Errorf("btfgen archive: %s is larger than %d MiB", want, maxObjectSize>>20)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxObjectSize))
		if err != nil {
			return nil, fmt.Errorf("btfgen archive: %s: %w", want, err)
		}
		return b, nil
	}
}
