package ociimage_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gadgetpm/gadgetpm/internal/ociimage"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// baseTar writes a one-file root file system as a plain tar.
func baseTar(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	body := "root:x:0:0:root:/root:/bin/bash\n"
	if err := tw.WriteHeader(&tar.Header{Name: "etc/passwd", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWriteReadsBackAsTheImageAsked writes an image tarball and reads it
// back the way an importer does: the tag, the config a runtime starts the
// container with, and the files of each layer.
func TestWriteReadsBackAsTheImageAsked(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, filepath.Join(dir, "tool"), "#!/bin/sh\necho hi\n")
	spec := ociimage.Spec{
		Tag:        "gadgetpm.local/test:v1",
		BaseTar:    baseTar(t, dir),
		Files:      []ociimage.File{{Source: bin, Path: "/usr/local/bin/tool", Mode: 0o755}},
		User:       "65532:65532",
		Entrypoint: []string{"/usr/local/bin/tool"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		WorkingDir: "/",
		Labels:     map[string]string{"org.opencontainers.image.version": "v1"},
	}
	out := filepath.Join(dir, "image.tar")
	digest, err := ociimage.Write(spec, out)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(spec.Tag)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("reading the image back under its tag: %v", err)
	}
	if got, _ := img.Digest(); got != digest {
		t.Errorf("digest read back %s, Write returned %s", got, digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/tool" ||
		strings.Join(cf.Config.Env, ",") != "PATH=/usr/local/bin:/usr/bin:/bin" || cf.OS != "linux" || cf.Architecture != "amd64" ||
		cf.Config.Labels["org.opencontainers.image.version"] != "v1" {
		t.Errorf("config: user %q entrypoint %q env %q os/arch %s/%s labels %v", cf.Config.User, cf.Config.Entrypoint, cf.Config.Env, cf.OS, cf.Architecture, cf.Config.Labels)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers: %d, %v; want the base and the files layer", len(layers), err)
	}
	files := map[string]*tar.Header{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = h
		}
		rc.Close()
	}
	if h := files["usr/local/bin/tool"]; h == nil || h.Mode != 0o755 || h.Uid != 0 {
		t.Errorf("usr/local/bin/tool in the layers: %+v; want mode 0755 owned by root", h)
	}
	for _, d := range []string{"usr/", "usr/local/", "usr/local/bin/"} {
		if files[d] == nil || files[d].Typeflag != tar.TypeDir {
			t.Errorf("directory %s missing from the files layer", d)
		}
	}
	if files["etc/passwd"] == nil {
		t.Error("etc/passwd of the base layer missing")
	}

	// The same inputs give the same image: a rebuild is recognised as
	// unchanged.
	again, err := ociimage.Write(spec, filepath.Join(dir, "again.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if again != digest {
		t.Errorf("the same inputs gave digests %s and %s", digest, again)
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.tar")
	for _, tc := range []struct {
		name string
		spec ociimage.Spec
		want string
	}{
		{"bad tag", ociimage.Spec{Tag: "Not A Tag", Files: []ociimage.File{{Source: "x", Path: "/x"}}}, `image tag "Not A Tag"`},
		{"no layers", ociimage.Spec{Tag: "a/b:c"}, "has no layers"},
		{"relative path", ociimage.Spec{Tag: "a/b:c", Files: []ociimage.File{{Source: writeFile(t, filepath.Join(dir, "f"), "x"), Path: "usr/f"}}}, `path "usr/f" must be absolute`},
		{"missing source", ociimage.Spec{Tag: "a/b:c", Files: []ociimage.File{{Source: filepath.Join(dir, "nope"), Path: "/nope"}}}, "image file /nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ociimage.Write(tc.spec, out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, statErr := os.Stat(out); statErr == nil {
				t.Errorf("a failed Write left %s behind", out)
			}
		})
	}
}
