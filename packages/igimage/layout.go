package igimage

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gadgetpm/gadgetpm/packages/store"
)

// Files of an image's package directory. The program and gadget.yaml are
// where a chart package keeps them, so the gadget runtime reads both kinds
// alike.
const (
	// InfoFile marks the directory as an image's and says which
	// (Info); a chart package has Chart.yaml instead.
	InfoFile    = "image.json"
	ProgramFile = "gadget/program.bpf.o"
	ConfigFile  = "gadget/gadget.yaml"
	// BTFGenFile is the btfgen layer as pulled, kept with the package.
	BTFGenFile = "gadget/btfgen.bin"
)

// Info is what InfoFile records of the image a package directory holds.
type Info struct {
	// Name of the package (spec.package; the image repository's last
	// path element).
	Name string `json:"name"`
	// Image is the reference it was installed from,
	// "<host>/<path>:<tag>" or "<host>/<path>@sha256:<hex>".
	Image string `json:"image"`
	// Version is the package's version (PackageVersion of the tag or
	// digest asked for); empty when the package was pulled by digest
	// alone (a node).
	Version string `json:"version,omitempty"`
	// Digest of the manifest, "sha256:<hex>".
	Digest string `json:"digest"`
	// Architecture of the manifest chosen from an index; empty without
	// an index.
	Architecture string `json:"architecture,omitempty"`
	// BTFGen says whether the image had a btfgen layer (BTFGenFile).
	BTFGen bool `json:"btfgen,omitempty"`
}

// PackageVersion is the version a package installed from reference (a
// tag or a digest) reports: the tag, or for a digest, which is no
// semantic version, "0.0.0+sha256.<hex>" (the digest as build metadata,
// so that version checks of the scheduler hold).
func PackageVersion(reference string) string {
	if hex, ok := strings.CutPrefix(reference, "sha256:"); ok {
		return "0.0.0+sha256." + hex
	}
	return reference
}

// InfoOf is the Info of img installed as package name.
func InfoOf(img *Image, name, version string) Info {
	return Info{Name: name, Image: img.Name(), Version: version, Digest: img.Digest.String(),
		Architecture: img.Architecture, BTFGen: img.BTFGen != nil}
}

// ReadInfo reads the InfoFile of dir; ok is false when dir is not an
// image's package directory.
func ReadInfo(dir string) (info Info, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, false, nil
	}
	if err != nil {
		return Info{}, false, fmt.Errorf("read %s: %w", InfoFile, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, true, fmt.Errorf("parse %s: %w", InfoFile, err)
	}
	return info, true, nil
}

// WriteDir lays img out in dir (created, or existing and empty) as a
// package directory.
func WriteDir(dir string, img *Image, info Info) error {
	info.BTFGen = img.BTFGen != nil
	meta, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("write image %s: %w", img.Name(), err)
	}
	files := map[string][]byte{InfoFile: append(meta, '\n'), ProgramFile: img.Program, ConfigFile: img.Config}
	if img.BTFGen != nil {
		files[BTFGenFile] = img.BTFGen
	}
	for rel, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write image %s: %w", img.Name(), err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("write image %s: %w", img.Name(), err)
		}
	}
	return nil
}

// Stored reports whether s holds the image of the manifest digest (hex):
// its manifest and its package directory.
func Stored(s *store.Store, hex string) bool {
	if _, ok := s.Archive(hex); !ok {
		return false
	}
	_, ok, err := ReadInfo(s.Dir(hex))
	return ok && err == nil
}

// Store puts img into s: its package directory at s.Dir(<manifest
// digest>) first, then its manifest as the archive of that digest, so a
// store that has the archive has the directory, and Store.Unpack of the
// digest returns it as it returns a chart package's.
func Store(s *store.Store, img *Image, info Info) error {
	hex := img.Digest.Encoded()
	dest := s.Dir(hex)
	if _, ok, err := ReadInfo(dest); !ok || err != nil {
		if err := os.RemoveAll(dest); err != nil {
			return fmt.Errorf("store image %s: %w", img.Name(), err)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dest), ".tmp-image-")
		if err != nil {
			return fmt.Errorf("store image %s: %w", img.Name(), err)
		}
		defer os.RemoveAll(tmp)
		if err := WriteDir(tmp, img, info); err != nil {
			return err
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return fmt.Errorf("store image %s: %w", img.Name(), err)
		}
		if err := os.Rename(tmp, dest); err != nil && !errors.Is(err, os.ErrExist) {
			if _, ok, _ := ReadInfo(dest); !ok { // not written concurrently
				return fmt.Errorf("store image %s: %w", img.Name(), err)
			}
		}
	}
	if err := s.PutArchive(hex, img.Data); err != nil {
		return fmt.Errorf("store image %s: %w", img.Name(), err)
	}
	return nil
}
