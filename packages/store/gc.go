package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// DefaultGCInterval is the default CollectorOptions.Interval
// (--cache-gc-interval).
const DefaultGCInterval = 10 * time.Minute

// Hold marks digest as in use (an in-flight download, a loaded gadget) so
// that Collect keeps it even when no package's status names it yet. Call
// release once done; holds nest. Holding also marks the digest's archive
// as just used, so that Collect keeps it for its minAge after the release
// too (the window between a download and the status naming it).
func (s *Store) Hold(digest string) (release func()) {
	s.mu.Lock()
	s.held[digest]++
	if checkDigest(digest) == nil {
		now := time.Now()
		_ = os.Chtimes(s.archivePath(digest), now, now) // absent: nothing to mark
	}
	s.mu.Unlock()
	var done bool
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if done {
			return
		}
		done = true
		if s.held[digest]--; s.held[digest] <= 0 {
			delete(s.held, digest)
		}
	}
}

// Collected is what one Collect removed.
type Collected struct {
	// Digests removed, sorted.
	Digests []string
	// Bytes freed (archives, provenance files and extracted trees).
	Bytes int64
}

// Collect removes the archive, provenance and extracted tree of every
// digest in the store that keep refuses, that nobody holds (Hold) and that
// was not written in the last minAge (a package being installed at this
// moment: downloaded, but not yet named by its status). Removal of a
// digest happens under the lock Hold takes, so a download that starts
// meanwhile waits and then downloads it again.
func (s *Store) Collect(keep func(digest string) bool, minAge time.Duration, now time.Time) (Collected, error) {
	var out Collected
	digests, err := s.digests()
	if err != nil {
		return out, fmt.Errorf("collect package store %s: %w", s.dir, err)
	}
	var errs []error
	for _, d := range digests {
		if keep(d) {
			continue
		}
		size, newest := s.footprint(d)
		if now.Sub(newest) < minAge {
			continue
		}
		s.mu.Lock()
		if s.held[d] > 0 {
			s.mu.Unlock()
			continue
		}
		err := s.Remove(d)
		s.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.Digests = append(out.Digests, d)
		out.Bytes += size
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("collect package store %s: %w", s.dir, err)
	}
	return out, nil
}

// digests lists every digest with an archive or an extracted tree.
func (s *Store) digests() ([]string, error) {
	set := map[string]bool{}
	for _, sub := range []string{"archives", "packages"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			d := strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".prov"), ".tgz")
			if digestRE.MatchString(d) {
				set[d] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out, nil
}

// footprint returns the bytes digest takes on disk and when any of its
// files was last written.
func (s *Store) footprint(digest string) (size int64, newest time.Time) {
	add := func(fi fs.FileInfo) {
		if !fi.IsDir() {
			size += fi.Size()
		}
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	for _, p := range []string{s.archivePath(digest), s.archivePath(digest) + ".prov"} {
		if fi, err := os.Stat(p); err == nil {
			add(fi)
		}
	}
	_ = filepath.WalkDir(s.Dir(digest), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // a tree being removed: count what is left
		}
		if fi, err := d.Info(); err == nil {
			add(fi)
		}
		return nil
	})
	return size, newest
}

// CollectorOptions configure a Collector.
type CollectorOptions struct {
	// Store to collect. Required.
	Store *Store
	// Named returns the digests some package's status names (and any
	// other digest its owner uses). When it fails the round removes
	// nothing. Required.
	Named func(ctx context.Context) (map[string]bool, error)
	// Interval between collections (--cache-gc-interval); the first runs
	// at Start. Default DefaultGCInterval.
	Interval time.Duration
	// MinAge keeps a digest written more recently than this, named or
	// not: a package being installed is downloaded before its status
	// names the digest. Default: Interval.
	MinAge time.Duration
	// Logger gets one info line per collection that removed something.
	Logger logr.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Collector is a manager.Runnable that collects a Store at start and then
// every Interval, until its context ends.
type Collector struct{ opts CollectorOptions }

// NewCollector returns a Collector; it starts nothing.
func NewCollector(opts CollectorOptions) (*Collector, error) {
	if opts.Store == nil || opts.Named == nil {
		return nil, errors.New("create package store collector: Store and Named are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultGCInterval
	}
	if opts.MinAge <= 0 {
		opts.MinAge = opts.Interval
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Collector{opts: opts}, nil
}

// NeedLeaderElection is false: every replica owns its own data directory.
func (c *Collector) NeedLeaderElection() bool { return false }

// Start collects at once, then every Interval until ctx ends.
func (c *Collector) Start(ctx context.Context) error {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		c.Once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once runs one collection and logs its outcome.
func (c *Collector) Once(ctx context.Context) {
	named, err := c.opts.Named(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.opts.Logger.Error(err, "package store garbage collection skipped: cannot tell which digests are in use")
		}
		return
	}
	got, err := c.opts.Store.Collect(func(d string) bool { return named[d] }, c.opts.MinAge, c.opts.Now())
	if err != nil {
		c.opts.Logger.Error(err, "package store garbage collection")
	}
	c.opts.Logger.Info("package store garbage collection", "removed", got.Digests, "bytesFreed", got.Bytes, "kept", len(named))
}
