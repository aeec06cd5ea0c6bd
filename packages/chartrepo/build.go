package chartrepo

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	helmloader "helm.sh/helm/v3/pkg/chart/loader"
	helmignore "helm.sh/helm/v3/pkg/ignore"
	helmrepo "helm.sh/helm/v3/pkg/repo"
)

// BuildOptions configure Build.
type BuildOptions struct {
	// BaseURL is written into index.yaml as the prefix of every archive URL.
	// Default: empty, so URLs are relative to index.yaml (what a file://
	// repository and most web servers want).
	BaseURL string
	// Progress, when set, receives one line per package packed.
	Progress io.Writer
}

// Built is one package Build packed.
type Built struct {
	// Name and Version from Chart.yaml.
	Name, Version string
	// Archive is the .tgz path.
	Archive string
}

// Build packs every package source below srcDir (each directory holding a
// Chart.yaml, searched one and two levels deep) into outDir as
// "<name>-<version>.tgz" and writes outDir/index.yaml with every archive's
// digest, as 'helm package' and 'helm repo index' would; stock Helm reads
// the result. Unlike 'helm package', file modes are kept, so hooks stay
// executable. Archives already in outDir are indexed too.
func Build(ctx context.Context, srcDir, outDir string, opts BuildOptions) ([]Built, error) {
	sources, err := findSources(srcDir)
	if err != nil {
		return nil, err
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("build repository: no package source (a directory with Chart.yaml) under %s", srcDir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("build repository: create %s: %w", outDir, err)
	}
	var built []Built
	for _, src := range sources {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ch, err := helmloader.LoadDir(src)
		if err != nil {
			return nil, fmt.Errorf("build repository: load chart %s: %w", src, err)
		}
		if err := ch.Validate(); err != nil {
			return nil, fmt.Errorf("build repository: %s/Chart.yaml: %w", src, err)
		}
		name := fmt.Sprintf("%s-%s.tgz", ch.Metadata.Name, ch.Metadata.Version)
		dest := filepath.Join(outDir, name)
		if err := Pack(src, ch.Metadata.Name, dest); err != nil {
			return nil, fmt.Errorf("build repository: %w", err)
		}
		built = append(built, Built{Name: ch.Metadata.Name, Version: ch.Metadata.Version, Archive: dest})
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "packed %s %s -> %s\n", ch.Metadata.Name, ch.Metadata.Version, dest)
		}
	}
	idx, err := helmrepo.IndexDirectory(outDir, opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("build repository: index %s: %w", outDir, err)
	}
	idx.SortEntries()
	if err := idx.WriteFile(filepath.Join(outDir, "index.yaml"), 0o644); err != nil {
		return nil, fmt.Errorf("build repository: write index.yaml: %w", err)
	}
	return built, nil
}

func findSources(srcDir string) ([]string, error) {
	fi, err := os.Stat(srcDir)
	if err != nil {
		return nil, fmt.Errorf("build repository: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build repository: %s is not a directory", srcDir)
	}
	if isChartDir(srcDir) {
		return []string{srcDir}, nil
	}
	var out []string
	for _, pattern := range []string{"*", "*/*"} {
		matches, err := filepath.Glob(filepath.Join(srcDir, pattern))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if isChartDir(m) {
				out = append(out, m)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func isChartDir(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "Chart.yaml"))
	return err == nil && fi.Mode().IsRegular()
}

// Pack writes the package source in srcDir to dest as a gzipped tar with
// every file below a top directory named name (Helm's archive layout),
// honouring .helmignore and keeping file modes. It writes a temp file and
// renames it, so dest is never half-written. Symlinks are refused.
func Pack(srcDir, name, dest string) error {
	rules := helmignore.Empty()
	if p := filepath.Join(srcDir, helmignore.HelmIgnore); fileExists(p) {
		r, err := helmignore.ParseFile(p)
		if err != nil {
			return fmt.Errorf("pack %s: read .helmignore: %w", srcDir, err)
		}
		rules = r
	}
	rules.AddDefaults()

	tmp, err := os.CreateTemp(filepath.Dir(dest), ".pack-*.tgz")
	if err != nil {
		return fmt.Errorf("pack %s: %w", srcDir, err)
	}
	defer os.Remove(tmp.Name())
	zw := gzip.NewWriter(tmp)
	tw := tar.NewWriter(zw)
	// A fixed mtime keeps archives of the same source byte-identical, so
	// their digests only change when the content does.
	mtime := time.Unix(0, 0)
	walkErr := filepath.WalkDir(srcDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(srcDir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if rules.Ignore(rel, fi) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			return nil
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink: packages hold regular files only", rel)
		case !fi.Mode().IsRegular():
			return fmt.Errorf("%s is not a regular file", rel)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:     name + "/" + rel,
			Mode:     int64(fi.Mode().Perm() | 0o644),
			Size:     int64(len(data)),
			ModTime:  mtime,
			Typeflag: tar.TypeReg,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if walkErr != nil {
		tmp.Close()
		return fmt.Errorf("pack %s: %w", srcDir, walkErr)
	}
	for _, c := range []io.Closer{tw, zw, tmp} {
		if err := c.Close(); err != nil {
			return fmt.Errorf("pack %s: %w", srcDir, err)
		}
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("pack %s: %w", srcDir, err)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
