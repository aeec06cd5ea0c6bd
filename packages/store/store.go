package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/gadgetpm/gadgetpm/packages/archive"
)

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Store is a directory of archives and extracted packages. It is safe for
// concurrent use, also by several processes sharing the directory.
type Store struct {
	dir    string
	limits archive.Limits

	mu   sync.Mutex
	held map[string]int // digest -> holds (Hold); guarded by mu
}

// New opens (creating when missing) a store in dir. limits bound every
// extraction; StripComponents is always 1 (Helm's "<chart>/" layout).
func New(dir string, limits archive.Limits) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "archives"), filepath.Join(dir, "packages")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open package store: %w", err)
		}
	}
	limits.StripComponents = 1
	return &Store{dir: dir, limits: limits, held: map[string]int{}}, nil
}

func checkDigest(digest string) error {
	if !digestRE.MatchString(digest) {
		return fmt.Errorf("digest %q: want 64 lowercase hex characters (sha256)", digest)
	}
	return nil
}

func (s *Store) archivePath(digest string) string {
	return filepath.Join(s.dir, "archives", digest+".tgz")
}

// Dir returns where the package of digest is (or would be) extracted.
func (s *Store) Dir(digest string) string {
	return filepath.Join(s.dir, "packages", digest)
}

// Archive returns the archive of digest when the store has it intact.
func (s *Store) Archive(digest string) ([]byte, bool) {
	if checkDigest(digest) != nil {
		return nil, false
	}
	data, err := os.ReadFile(s.archivePath(digest))
	if err != nil {
		return nil, false
	}
	if sum(data) != digest {
		// Corrupted on disk: drop it so it is downloaded again.
		_ = os.Remove(s.archivePath(digest))
		return nil, false
	}
	return data, true
}

// PutArchive stores data under digest, refusing data that does not hash
// to it.
func (s *Store) PutArchive(digest string, data []byte) error {
	if err := checkDigest(digest); err != nil {
		return fmt.Errorf("store archive: %w", err)
	}
	if got := sum(data); got != digest {
		return fmt.Errorf("store archive: data is sha256:%s, not sha256:%s", got, digest)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "archives"), ".tmp-*")
	if err != nil {
		return fmt.Errorf("store archive: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return fmt.Errorf("store archive: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store archive: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.archivePath(digest)); err != nil {
		return fmt.Errorf("store archive: %w", err)
	}
	return nil
}

// PutProvenance stores the Helm provenance file of the archive of digest,
// so a cached archive can be verified again, e.g. after verify.mode got
// stricter.
func (s *Store) PutProvenance(digest string, prov []byte) error {
	if err := checkDigest(digest); err != nil {
		return fmt.Errorf("store provenance: %w", err)
	}
	p := s.archivePath(digest) + ".prov"
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, prov, 0o644); err != nil {
		return fmt.Errorf("store provenance: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("store provenance: %w", err)
	}
	return nil
}

// Provenance returns the stored provenance file of digest, nil if none.
func (s *Store) Provenance(digest string) []byte {
	if checkDigest(digest) != nil {
		return nil
	}
	b, _ := os.ReadFile(s.archivePath(digest) + ".prov")
	return b
}

// Unpack extracts the stored archive of digest, unless already extracted,
// and returns the package directory.
func (s *Store) Unpack(ctx context.Context, digest string) (string, error) {
	dest := s.Dir(digest)
	if err := checkDigest(digest); err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		return dest, nil
	}
	data, ok := s.Archive(digest)
	if !ok {
		return "", fmt.Errorf("unpack sha256:%s: the archive is not in the store: download it first", digest)
	}
	err := archive.Extract(ctx, bytes.NewReader(data), dest, s.limits)
	if errors.Is(err, archive.ErrExists) {
		return dest, nil // extracted concurrently
	}
	if err != nil {
		return "", fmt.Errorf("unpack sha256:%s: %w", digest, err)
	}
	return dest, nil
}

// Remove deletes the archive and the extracted tree of digest.
func (s *Store) Remove(digest string) error {
	if err := checkDigest(digest); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if err := os.RemoveAll(s.Dir(digest)); err != nil {
		return fmt.Errorf("remove sha256:%s: %w", digest, err)
	}
	for _, p := range []string{s.archivePath(digest), s.archivePath(digest) + ".prov"} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove sha256:%s: %w", digest, err)
		}
	}
	return nil
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}
