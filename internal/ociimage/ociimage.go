package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one file of a layer built from files on disk.
type File struct {
	// Source is the file on disk.
	Source string
	// Path is where it lands in the image, absolute ("/usr/local/bin/x").
	Path string
	// Mode is its permission bits (0o755 for executables).
	Mode int64
}

// Spec says what goes into an image.
type Spec struct {
	// Tag names the image in the tarball ("gadgetpm.local/gadgetpm:dev").
	Tag string
	// BaseTar is an optional tar file (plain or gzip) used as the first
	// layer as it is: a root file system.
	BaseTar string
	// Files form one more layer, written in path order with a fixed time,
	// so the same inputs give the same layer digest.
	Files []File
	// User, Entrypoint, Env and WorkingDir go into the image config.
	User       string
	Entrypoint []string
	Env        []string
	WorkingDir string
	// Labels are the image config's labels.
	Labels map[string]string
}

// Write builds the image described by spec and writes it as an image
// tarball to out (through a temporary file and a rename, so out is never
// half-written). It returns the image's manifest digest.
func Write(spec Spec, out string) (v1.Hash, error) {
	tag, err := name.NewTag(spec.Tag)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image tag %q: %w", spec.Tag, err)
	}
	var layers []v1.Layer
	if spec.BaseTar != "" {
		l, err := tarball.LayerFromFile(spec.BaseTar)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("base layer %s: %w", spec.BaseTar, err)
		}
		layers = append(layers, l)
	}
	var tmpLayer string
	if len(spec.Files) > 0 {
		f, err := os.CreateTemp(filepath.Dir(out), ".layer-*.tar")
		if err != nil {
			return v1.Hash{}, fmt.Errorf("temporary layer next to %s: %w", out, err)
		}
		tmpLayer = f.Name()
		defer os.Remove(tmpLayer)
		if err := writeFilesTar(f, spec.Files); err != nil {
			f.Close()
			return v1.Hash{}, err
		}
		if err := f.Close(); err != nil {
			return v1.Hash{}, fmt.Errorf("closing layer %s: %w", tmpLayer, err)
		}
		l, err := tarball.LayerFromFile(tmpLayer)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("files layer: %w", err)
		}
		layers = append(layers, l)
	}
	if len(layers) == 0 {
		return v1.Hash{}, errors.New("image " + spec.Tag + " has no layers: give a base tar or files")
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("adding layers to %s: %w", spec.Tag, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("config of %s: %w", spec.Tag, err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.User = spec.User
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Env = spec.Env
	cf.Config.WorkingDir = spec.WorkingDir
	cf.Config.Labels = spec.Labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("setting the config of %s: %w", spec.Tag, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest of %s: %w", spec.Tag, err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return v1.Hash{}, fmt.Errorf("writing %s to %s: %w", spec.Tag, tmp, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return v1.Hash{}, fmt.Errorf("renaming %s to %s: %w", tmp, out, err)
	}
	return digest, nil
}

// writeFilesTar writes files, and the directories above them, as a tar
// stream owned by root with a fixed modification time.
func writeFilesTar(w io.Writer, files []File) error {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0).UTC()
	dirs := map[string]bool{}
	for _, f := range sorted {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("image file %s: path %q must be absolute", f.Source, f.Path)
		}
		clean := strings.TrimPrefix(path.Clean(f.Path), "/")
		var parents []string
		for d := path.Dir(clean); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return fmt.Errorf("layer directory %s: %w", d, err)
			}
		}
		if err := addFile(tw, f, clean, epoch); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("closing layer: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, f File, name string, mtime time.Time) error {
	src, err := os.Open(f.Source)
	if err != nil {
		return fmt.Errorf("image file %s: %w", f.Path, err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("image file %s: %w", f.Source, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("image file %s (for %s) is not a regular file", f.Source, f.Path)
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: f.Mode, Size: st.Size(), ModTime: mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer file %s: %w", f.Path, err)
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("layer file %s from %s: %w", f.Path, f.Source, err)
	}
	return nil
}
