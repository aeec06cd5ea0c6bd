package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Defaults of Limits.
const (
	DefaultMaxFiles      = 10000
	DefaultMaxFileBytes  = 64 << 20
	DefaultMaxTotalBytes = 256 << 20
)

// Errors a caller may match with errors.Is; the returned error also names
// the entry.
var (
	// ErrUnsafePath: an absolute path, a ".." component, or an entry
	// outside the top directory being stripped.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrLink: a symbolic or hard link.
	ErrLink = errors.New("link not allowed")
	// ErrSpecialFile: a device file, FIFO or other non-regular entry.
	ErrSpecialFile = errors.New("special file not allowed")
	// ErrLimit: too many entries or too many bytes.
	ErrLimit = errors.New("archive over limit")
	// ErrExists: the destination exists already.
	ErrExists = errors.New("destination exists")
)

// Limits bound what one archive may hold. Zero fields mean their defaults.
type Limits struct {
	// MaxFiles is the most entries (files and directories). Default
	// DefaultMaxFiles.
	MaxFiles int
	// MaxFileBytes is the largest single file. Default DefaultMaxFileBytes.
	MaxFileBytes int64
	// MaxTotalBytes is the most bytes of all files together. Default
	// DefaultMaxTotalBytes.
	MaxTotalBytes int64
	// StripComponents drops this many leading path components of every
	// entry (1 for Helm's "<chart>/" layout); an entry with fewer
	// components is an ErrUnsafePath.
	StripComponents int
}

func (l *Limits) setDefaults() {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
}

// Extract reads a gzipped tar from r into dest, which must not exist; its
// parent must. On error nothing is left at dest.
func Extract(ctx context.Context, r io.Reader, dest string, limits Limits) error {
	limits.setDefaults()
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("extract to %s: %w", dest, ErrExists)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-")
	if err != nil {
		return fmt.Errorf("extract to %s: %w", dest, err)
	}
	if err := extract(ctx, r, tmp, limits); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("extract archive: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("extract to %s: %w", dest, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.RemoveAll(tmp)
		if _, statErr := os.Lstat(dest); statErr == nil {
			return fmt.Errorf("extract to %s: %w", dest, ErrExists)
		}
		return fmt.Errorf("extract to %s: %w", dest, err)
	}
	return nil
}

func extract(ctx context.Context, r io.Reader, root string, limits Limits) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a gzipped tar: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var entries int
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		entries++
		if entries > limits.MaxFiles {
			return fmt.Errorf("more than %d entries: %w", limits.MaxFiles, ErrLimit)
		}
		rel, err := cleanName(hdr.Name, limits.StripComponents, hdr.Typeflag == tar.TypeDir)
		if err != nil {
			return err
		}
		if rel == "" {
			continue // the stripped top directory itself
		}
		target := filepath.Join(root, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			if hdr.Size > limits.MaxFileBytes {
				return fmt.Errorf("entry %q is %d bytes, limit %d: %w", hdr.Name, hdr.Size, limits.MaxFileBytes, ErrLimit)
			}
			if total+hdr.Size > limits.MaxTotalBytes {
				return fmt.Errorf("entries up to %q total more than %d bytes: %w", hdr.Name, limits.MaxTotalBytes, ErrLimit)
			}
			n, err := writeFile(target, tr, hdr, limits.MaxFileBytes)
			total += n
			if err != nil {
				return err
			}
		case tar.TypeSymlink, tar.TypeLink:
			kind := "symlink"
			if hdr.Typeflag == tar.TypeLink {
				kind = "hard link"
			}
			if escapes(rel, hdr.Linkname, hdr.Typeflag == tar.TypeLink) {
				return fmt.Errorf("entry %q is a %s to %q, outside the package: %w", hdr.Name, kind, hdr.Linkname, ErrLink)
			}
			return fmt.Errorf("entry %q is a %s to %q: packages hold regular files only: %w", hdr.Name, kind, hdr.Linkname, ErrLink)
		case tar.TypeChar, tar.TypeBlock:
			return fmt.Errorf("entry %q is a device file: %w", hdr.Name, ErrSpecialFile)
		case tar.TypeFifo:
			return fmt.Errorf("entry %q is a FIFO: %w", hdr.Name, ErrSpecialFile)
		default:
			return fmt.Errorf("entry %q has tar type %q: %w", hdr.Name, hdr.Typeflag, ErrSpecialFile)
		}
	}
	if entries == 0 {
		return errors.New("the archive is empty")
	}
	return nil
}

// cleanName checks an entry name and strips leading components.
func cleanName(name string, strip int, dir bool) (string, error) {
	n := strings.ReplaceAll(name, "\\", "/")
	if path.IsAbs(n) || filepath.IsAbs(name) || (len(n) > 1 && n[1] == ':') {
		return "", fmt.Errorf("entry %q has an absolute path: %w", name, ErrUnsafePath)
	}
	parts := strings.Split(n, "/")
	var kept []string
	for _, p := range parts {
		switch p {
		case "..":
			return "", fmt.Errorf("entry %q has a \"..\" component: %w", name, ErrUnsafePath)
		case "", ".":
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		return "", nil
	}
	// Fewer components than stripped, or a file where the top directory
	// should be.
	if len(kept) < strip || (len(kept) == strip && !dir) {
		return "", fmt.Errorf("entry %q is outside the package's top directory: %w", name, ErrUnsafePath)
	}
	return strings.Join(kept[strip:], "/"), nil
}

// escapes reports whether a link at rel pointing to target leaves the
// package root.
func escapes(rel, target string, hard bool) bool {
	t := strings.ReplaceAll(target, "\\", "/")
	if path.IsAbs(t) {
		return true
	}
	base := path.Dir(rel)
	if hard {
		base = ""
	}
	joined := path.Join(base, t)
	return joined == ".." || strings.HasPrefix(joined, "../")
}

func writeFile(target string, r io.Reader, hdr *tar.Header, limit int64) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	// Keep the executable bit; never setuid/setgid/sticky or writable by
	// others.
	mode := os.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		mode = 0o755
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if errors.Is(err, os.ErrExist) {
		return 0, fmt.Errorf("entry %q appears twice: %w", hdr.Name, ErrUnsafePath)
	}
	if err != nil {
		return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	if n > limit {
		return n, fmt.Errorf("entry %q is over %d bytes: %w", hdr.Name, limit, ErrLimit)
	}
	return n, nil
}
