package output

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of FileOptions.
const (
	// DefaultFileMaxBytes is the default FileOptions.MaxBytes: 10 MiB.
	DefaultFileMaxBytes = 10 << 20
	// DefaultFileMaxFiles is the default FileOptions.MaxFiles: 5.
	DefaultFileMaxFiles = 5
)

// fileExt ends every output file's name.
const fileExt = ".jsonl"

// maxFileNameLen keeps "<name>.jsonl.<n>" within common file system limits.
const maxFileNameLen = 200

// FileOptions configures a File sink.
type FileOptions struct {
	// Dir is the node's output directory. Required.
	Dir string
	// Namespace is the Trace's namespace: files go to Dir/<Namespace>/.
	// Required.
	Namespace string
	// Name is the file name without extension: spec.output, or the
	// Trace's name when spec.output is empty. It must be a plain file name
	// (no "/" or ".."); a trailing ".jsonl" is not repeated. Required.
	Name string
	// MaxBytes is the size at which the file rotates. 0 (or less) means
	// DefaultFileMaxBytes.
	MaxBytes int64
	// MaxFiles is how many files are kept: the current one and MaxFiles-1
	// rotated ones (.1 newest). 0 (or less) means DefaultFileMaxFiles.
	MaxFiles int
}

// File writes JSON lines to Dir/<Namespace>/<Name>.jsonl, appending to a
// file an earlier run left. Before a line would take the file past
// MaxBytes, the file rotates: <Name>.jsonl becomes <Name>.jsonl.1, .1
// becomes .2 and so on, keeping MaxFiles files in all. A line longer than
// MaxBytes goes alone into its own file.
//
// Every event goes to the file in one write (no user-space buffering), so
// a reader on the node sees it at once. Stats.Dropped is always 0: a failed
// write is an error that ends the run.
//
// Write and Close follow Sink's contract; Stats is safe to call
// concurrently with Write.
type File struct {
	opts FileOptions
	path string

	// f, size and line are used by Write and Close only (serialised by the
	// caller).
	f    *os.File
	size int64
	line []byte

	events atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// NewFile checks opts, creates Dir/<Namespace> when missing and opens the
// output file for appending.
func NewFile(opts FileOptions) (*File, error) {
	name := strings.TrimSuffix(opts.Name, fileExt)
	switch {
	case opts.Dir == "":
		return nil, fmt.Errorf("file output %q: no output directory", opts.Name)
	case !plainName(opts.Namespace):
		return nil, fmt.Errorf("file output %q: namespace %q: expected a plain name", opts.Name, opts.Namespace)
	case !plainName(name) || len(name) > maxFileNameLen:
		return nil, fmt.Errorf("spec.output %q: expected a plain file name of at most %d characters (no \"/\" or \"..\")", opts.Name, maxFileNameLen)
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultFileMaxBytes
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultFileMaxFiles
	}
	opts.Name = name
	dir := filepath.Join(opts.Dir, opts.Namespace)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("file output %s/%s: %w", opts.Namespace, name, err)
	}
	f := &File{opts: opts, path: filepath.Join(dir, name+fileExt)}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

// plainName reports whether s can be one path element: not empty, not "."
// or "..", no "/", "\" or NUL, no "..".
func plainName(s string) bool {
	return s != "" && s != "." && !strings.Contains(s, "..") && !strings.ContainsAny(s, "/\\\x00")
}

func (f *File) open() error {
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open output file: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return fmt.Errorf("open output file: %w", err)
	}
	f.f, f.size = fh, st.Size()
	return nil
}

// Path is the current output file.
func (f *File) Path() string { return f.path }

// Write appends b and a newline to the file, rotating first when the line
// would take the file past MaxBytes. It returns ErrClosed after Close.
func (f *File) Write(b []byte) error {
	if f.f == nil {
		return ErrClosed
	}
	n := int64(len(b)) + 1
	if f.size > 0 && f.size+n > f.opts.MaxBytes {
		if err := f.rotate(); err != nil {
			return err
		}
	}
	f.line = append(append(f.line[:0], b...), '\n')
	w, err := f.f.Write(f.line)
	f.size += int64(w)
	if err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	f.events.Add(1)
	return nil
}

// rotate shifts the rotated files up by one, dropping the oldest, and
// starts a new current file.
func (f *File) rotate() error {
	if err := f.f.Close(); err != nil {
		f.f = nil
		return fmt.Errorf("rotate %s: %w", f.path, err)
	}
	f.f = nil
	last := f.opts.MaxFiles - 1
	if last == 0 {
		if err := os.Remove(f.path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate %s: %w", f.path, err)
		}
	} else {
		for i := last - 1; i >= 1; i-- {
			err := os.Rename(f.rotated(i), f.rotated(i+1))
			if err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("rotate %s: %w", f.path, err)
			}
		}
		if err := os.Rename(f.path, f.rotated(1)); err != nil {
			return fmt.Errorf("rotate %s: %w", f.path, err)
		}
	}
	if err := f.open(); err != nil {
		return fmt.Errorf("rotate %s: %w", f.path, err)
	}
	return nil
}

// rotated is the path of the i-th rotated file.
func (f *File) rotated(i int) string { return f.path + "." + strconv.Itoa(i) }

// Close closes the file and returns its path.
func (f *File) Close(ctx context.Context) (string, error) {
	f.closeOnce.Do(func() {
		if f.f != nil {
			if err := f.f.Close(); err != nil {
				f.closeErr = fmt.Errorf("close %s: %w", f.path, err)
			}
			f.f = nil
		}
	})
	return f.path, f.closeErr
}

// Stats returns the events written; Dropped is always 0.
func (f *File) Stats() Stats { return Stats{Events: f.events.Load()} }

// FileName is the file name (without extension) a Trace's File output
// uses: spec.output without a trailing ".jsonl", else the Trace's name.
func FileName(output, traceName string) string {
	if output == "" {
		return traceName
	}
	return strings.TrimSuffix(output, fileExt)
}

// outputBase returns the name a file of a File output was written under:
// "<name>" of "<name>.jsonl" and "<name>.jsonl.<n>"; ok is false for any
// other file (not ours: left alone).
func outputBase(file string) (name string, ok bool) {
	if name, ok := strings.CutSuffix(file, fileExt); ok && name != "" {
		return name, true
	}
	i := strings.LastIndex(file, fileExt+".")
	if i <= 0 {
		return "", false
	}
	if _, err := strconv.Atoi(file[i+len(fileExt)+1:]); err != nil {
		return "", false
	}
	return file[:i], true
}

// RemoveFiles removes the files of the File output Dir/<namespace>/<name>
// (the current file and the rotated ones) and returns the bytes freed.
func RemoveFiles(dir, namespace, name string) (int64, error) {
	freed, err := collectIn(dir, namespace, time.Time{}, func(_, n string) bool { return n != name })
	if err != nil {
		return freed, fmt.Errorf("remove file output %s/%s: %w", namespace, name, err)
	}
	return freed, nil
}

// CollectFiles removes, under dir (Dir/<namespace>/<name>.jsonl[.<n>]),
// the files of every output keep refuses that were last written before
// before (keep was read then: a Trace created since may be writing), and
// returns the bytes freed. Files of other names are left alone.
func CollectFiles(dir string, before time.Time, keep func(namespace, name string) bool) (int64, error) {
	nss, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("collect file outputs in %s: %w", dir, err)
	}
	var freed int64
	var errs []error
	for _, ns := range nss {
		if !ns.IsDir() {
			continue
		}
		n, err := collectIn(dir, ns.Name(), before, keep)
		freed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return freed, fmt.Errorf("collect file outputs in %s: %w", dir, err)
	}
	return freed, nil
}

// collectIn removes the output files of dir/namespace that keep refuses
// and, unless before is zero, were last written before it.
func collectIn(dir, namespace string, before time.Time, keep func(namespace, name string) bool) (int64, error) {
	files, err := os.ReadDir(filepath.Join(dir, namespace))
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var freed int64
	var errs []error
	for _, f := range files {
		name, ok := outputBase(f.Name())
		if !ok || f.IsDir() || keep(namespace, name) {
			continue
		}
		fi, err := f.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if !before.IsZero() && !fi.ModTime().Before(before) {
			continue
		}
		size := fi.Size()
		if err := os.Remove(filepath.Join(dir, namespace, f.Name())); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
			continue
		}
		freed += size
	}
	return freed, errors.Join(errs...)
}
