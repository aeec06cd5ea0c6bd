package archive

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
)

// ReadFile returns the content of the file rel (after StripComponents, the
// way Extract would name it) from a gzipped tar read from r, without
// extracting anything. It stops at the first match. It reads at most
// MaxTotalBytes of decompressed data and MaxFiles entries, and refuses a
// matching file over MaxFileBytes. It returns an error wrapping
// fs.ErrNotExist when the file is not found within those bounds; an
// archive that Extract would refuse for another reason may still yield the
// file, so callers that need the whole archive checked call Extract.
func ReadFile(ctx context.Context, r io.Reader, rel string, limits Limits) ([]byte, error) {
	limits.setDefaults()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: not a gzipped tar: %w", rel, err)
	}
	defer zr.Close()
	// Bounding the decompressed stream keeps a small archive that inflates
	// to gigabytes from costing more than extracting it would.
	tr := tar.NewReader(io.LimitReader(zr, limits.MaxTotalBytes))
	for entries := 0; entries < limits.MaxFiles; entries++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: read tar: %w", rel, err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		name, err := cleanName(hdr.Name, limits.StripComponents, false)
		if err != nil || name != rel {
			continue
		}
		if hdr.Size > limits.MaxFileBytes {
			return nil, fmt.Errorf("read %s: entry %q is %d bytes, limit %d: %w", rel, hdr.Name, hdr.Size, limits.MaxFileBytes, ErrLimit)
		}
		data, err := io.ReadAll(io.LimitReader(tr, limits.MaxFileBytes))
		if err != nil {
			return nil, fmt.Errorf("read %s: entry %q: %w", rel, hdr.Name, err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("read %s: %w in the archive", rel, fs.ErrNotExist)
}
