package chartrepo

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	helmregistry "helm.sh/helm/v3/pkg/registry"
	helmrepo "helm.sh/helm/v3/pkg/repo"
	"oras.land/oras-go/v2/content"

	"github.com/gadgetpm/gadgetpm/packages/download"
)

// Errors a caller may match with errors.Is.
var (
	// ErrNoDigest: the index has no digest for the chosen version. Digests
	// are mandatory.
	ErrNoDigest = errors.New("index entry has no digest")
	// ErrDigestMismatch: the downloaded archive does not hash to the digest
	// the index promised.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrNotFound: the repository has no such package or no version matching
	// the constraint.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge: an index, manifest or archive is over its size limit
	// (the same error as download.ErrTooLarge).
	ErrTooLarge = download.ErrTooLarge
)

// Defaults of Options.
const (
	DefaultTimeout       = 60 * time.Second
	DefaultMaxIndexBytes = download.DefaultMaxIndexBytes
	DefaultMaxChartBytes = download.DefaultMaxPackageBytes
)

// Options configure a Client. The zero value of every field but URL means
// its default.
type Options struct {
	// URL of the repository: https://, http://, file:// or oci://.
	URL string
	// Username and Password are sent as basic auth to an http(s)
	// repository (only to the repository's own host) or as registry
	// credentials to an oci:// registry. Both empty: anonymous.
	Username, Password string
	// CABundle is PEM certificate authorities trusted on top of the
	// system's for https:// and oci://.
	CABundle []byte
	// Timeout of one request. Default DefaultTimeout.
	Timeout time.Duration
	// MaxIndexBytes caps index.yaml and an OCI manifest
	// (--max-index-size). Default DefaultMaxIndexBytes.
	MaxIndexBytes int64
	// MaxChartBytes caps one package archive, an OCI chart layer by its
	// descriptor before the pull (--max-package-size). Default
	// DefaultMaxChartBytes.
	MaxChartBytes int64
	// PlainHTTP talks plain HTTP to an oci:// registry (local registries
	// and tests). Default false: HTTPS.
	PlainHTTP bool
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxIndexBytes <= 0 {
		o.MaxIndexBytes = DefaultMaxIndexBytes
	}
	if o.MaxChartBytes <= 0 {
		o.MaxChartBytes = DefaultMaxChartBytes
	}
}

// Client reads one repository. It is safe for concurrent use. Every HTTP
// request (index, archive, provenance, each registry call) runs under the
// caller's context and ends at Options.Timeout at the latest, its
// connection closed (deadlineTransport): Helm's getter and registry client
// take no context of their own. Downloads and pulls are read through the
// size limits (packages/download).
type Client struct {
	opts   Options
	scheme string
	base   *url.URL
	// tr is shared by the requests of all calls, so connections are
	// reused; each call wraps it with its context (bound).
	tr http.RoundTripper
	// ropts configure a registry client per call (oci://): Helm's lists
	// tags; pulls go through download.Registry over the same transport.
	ropts []helmregistry.ClientOption
	// maxIndex and maxChart are the limits of Options, named for errors.
	maxIndex, maxChart download.Limit
}

// New checks the options and returns a Client. It does no network I/O.
func New(opts Options) (*Client, error) {
	opts.setDefaults()
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("parse repository url %q: %w", opts.URL, err)
	}
	c := &Client{opts: opts, scheme: u.Scheme, base: u,
		maxIndex: download.Limit{Bytes: opts.MaxIndexBytes, What: "index", Flag: download.FlagMaxIndexSize},
		maxChart: download.Limit{Bytes: opts.MaxChartBytes, What: "package archive", Flag: download.FlagMaxPackageSize}}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("repository url %q has no host", opts.URL)
		}
		tr, err := transport(opts.CABundle)
		if err != nil {
			return nil, err
		}
		c.tr = tr
	case "file":
		if u.Path == "" || u.Host != "" {
			return nil, fmt.Errorf("repository url %q: want file:///absolute/dir", opts.URL)
		}
	case helmregistry.OCIScheme:
		if u.Host == "" {
			return nil, fmt.Errorf("repository url %q has no registry host", opts.URL)
		}
		tr, err := transport(opts.CABundle)
		if err != nil {
			return nil, err
		}
		c.tr = tr
		ropts := []helmregistry.ClientOption{
			helmregistry.ClientOptWriter(io.Discard),
			// Only the repository's own credentials count: never the
			// machine's docker or helm login state.
			helmregistry.ClientOptCredentialsFile(filepath.Join(os.TempDir(), "gadgetpm-no-registry-login", "config.json")),
		}
		if opts.Username != "" || opts.Password != "" {
			ropts = append(ropts, helmregistry.ClientOptBasicAuth(opts.Username, opts.Password))
		}
		if opts.PlainHTTP {
			ropts = append(ropts, helmregistry.ClientOptPlainHTTP())
		}
		c.ropts = ropts
		// Check the options now; calls make their own (registryFor).
		if _, err := helmregistry.NewClient(ropts...); err != nil {
			return nil, fmt.Errorf("create registry client: %w", err)
		}
	default:
		return nil, fmt.Errorf("repository url %q: scheme %q is not supported: use https://, http://, file:// or oci://", opts.URL, u.Scheme)
	}
	return c, nil
}

func transport(caBundle []byte) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true
	if len(caBundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("caBundle holds no PEM certificate: give PEM-encoded CA certificates")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr, nil
}

// IsOCI reports whether the repository is an OCI registry, whose packages
// are listed by name (registries have no index of repositories).
func (c *Client) IsOCI() bool { return c.scheme == helmregistry.OCIScheme }

// Version is one version of one package in a repository.
type Version struct {
	// Name of the package.
	Name string
	// Version, semver.
	Version string
	// Digest is the archive's sha256 as lowercase hex; empty when the
	// index has none (Download then fails) and for OCI, where the registry
	// is content-addressed and the layer digest is checked on pull.
	Digest string
	// URLs of the archive, as the index lists them (not for OCI).
	URLs []string
	// Created is when the version was packaged, when the index says.
	Created time.Time
	// Problem, when not nil, says why the index entry cannot be installed
	// as written (wrapping ErrBadIndexEntry or ErrBadDigest); Download
	// returns it. Digest is empty when the digest is the problem.
	Problem error
}

// Index is what a repository offers.
type Index struct {
	// Digest is "sha256:<hex>" of the index.yaml read (for OCI: of the
	// sorted tag lists), so a sync can tell whether anything changed.
	Digest string
	// Packages maps a package name to its versions, newest first.
	Packages map[string][]Version
}

// Names returns the package names, sorted.
func (i *Index) Names() []string {
	names := make([]string, 0, len(i.Packages))
	for n := range i.Packages {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Problems lists entries a package cannot be installed from because they
// have no digest, one sentence each, sorted. Malformed lists the entries
// that are written wrongly.
func (i *Index) Problems() []string {
	var out []string
	for _, n := range i.Names() {
		for _, v := range i.Packages[n] {
			if v.Digest == "" && len(v.URLs) > 0 && v.Problem == nil {
				out = append(out, fmt.Sprintf("%s %s has no digest", n, v.Version))
			}
		}
	}
	return out
}

// Index reads the repository's index. For OCI, registries cannot list
// their repositories, so only the named packages are listed (their tags);
// names are ignored for other schemes.
func (c *Client) Index(ctx context.Context, names ...string) (*Index, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.IsOCI() {
		return c.ociIndex(ctx, names)
	}
	data, err := c.fetch(ctx, "index.yaml", c.maxIndex)
	if err != nil {
		return nil, fmt.Errorf("read index of %s: %w", c.opts.URL, err)
	}
	f, err := ParseIndex(data)
	if err != nil {
		// Helm's message names the field but not the entry (a version YAML
		// reads as a number fails the whole file): name it when we can.
		if problems := entryProblems(data); len(problems) > 0 {
			return nil, fmt.Errorf("read index of %s: %w; %s", c.opts.URL, err, joinProblems(problems))
		}
		return nil, fmt.Errorf("read index of %s: %w", c.opts.URL, err)
	}
	problems := entryProblems(data)
	sum := sha256.Sum256(data)
	idx := &Index{Digest: "sha256:" + hex.EncodeToString(sum[:]), Packages: map[string][]Version{}}
	for name, cvs := range f.Entries {
		for _, cv := range cvs {
			v := Version{
				Name:    name,
				Version: cv.Version,
				Digest:  strings.ToLower(strings.TrimPrefix(cv.Digest, "sha256:")),
				URLs:    cv.URLs,
				Created: cv.Created,
				Problem: problems[entryKey{name, cv.Version}],
			}
			if errors.Is(v.Problem, ErrBadDigest) {
				v.Digest = ""
			}
			idx.Packages[name] = append(idx.Packages[name], v)
		}
	}
	return idx, nil
}

// ParseIndex parses index.yaml bytes with Helm's loader (strict: unknown
// keys are errors), which sorts versions newest first and drops entries
// that are not valid chart metadata.
func ParseIndex(data []byte) (*helmrepo.IndexFile, error) {
	dir, err := os.MkdirTemp("", "gadgetpm-index-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "index.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return nil, fmt.Errorf("write temp index: %w", err)
	}
	f, err := helmrepo.LoadIndexFile(p)
	if err != nil {
		return nil, fmt.Errorf("parse index.yaml: %w (fix the file or regenerate it with 'gadgetpm repo build')", err)
	}
	return f, nil
}

func (c *Client) ociIndex(ctx context.Context, names []string) (*Index, error) {
	idx := &Index{Packages: map[string][]Version{}}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	h := sha256.New()
	for _, name := range sorted {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ref := c.ociRef(name)
		reg, err := c.registryFor(ctx)
		if err != nil {
			return nil, err
		}
		tags, err := reg.Tags(ref)
		if err != nil {
			return nil, fmt.Errorf("list tags of %s: %w", ref, err)
		}
		fmt.Fprintf(h, "%s:%s\n", name, strings.Join(tags, ","))
		for _, t := range tags {
			idx.Packages[name] = append(idx.Packages[name], Version{Name: name, Version: t})
		}
	}
	idx.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return idx, nil
}

func (c *Client) ociRef(name string) string {
	return strings.TrimSuffix(strings.TrimPrefix(c.opts.URL, "oci://"), "/") + "/" + name
}

// fetch reads a path relative to the repository base, or an absolute URL,
// through limit.
func (c *Client) fetch(ctx context.Context, ref string, limit download.Limit) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch c.scheme {
	case "file":
		p := ref
		if !filepath.IsAbs(p) {
			if u, err := url.Parse(ref); err == nil && u.Scheme == "file" {
				p = u.Path
			} else {
				p = filepath.Join(c.base.Path, filepath.FromSlash(ref))
			}
		}
		return download.File(p, limit)
	default:
		full, err := helmrepo.ResolveReferenceURL(c.opts.URL, ref)
		if err != nil {
			return nil, fmt.Errorf("resolve %q against %s: %w", ref, c.opts.URL, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
		if err != nil {
			return nil, fmt.Errorf("request %s: %w", full, err)
		}
		req.Header.Set("User-Agent", "gadgetpm")
		// Credentials go to the repository's own scheme and host only, as
		// Helm's getter sends them.
		if c.opts.Username != "" && c.opts.Password != "" && req.URL.Scheme == c.base.Scheme && req.URL.Host == c.base.Host {
			req.SetBasicAuth(c.opts.Username, c.opts.Password)
		}
		return download.Get(&http.Client{Transport: c.bound(ctx)}, req, limit)
	}
}

// registryFor is a registry client for calls made on behalf of ctx.
func (c *Client) registryFor(ctx context.Context) (*helmregistry.Client, error) {
	reg, err := helmregistry.NewClient(append(c.ropts[:len(c.ropts):len(c.ropts)], helmregistry.ClientOptHTTPClient(&http.Client{Transport: c.bound(ctx)}))...)
	if err != nil {
		return nil, fmt.Errorf("create registry client: %w", err)
	}
	return reg, nil
}

// Archive is a downloaded package.
type Archive struct {
	// Name and Version of the package.
	Name, Version string
	// Filename is the archive's base name, "<name>-<version>.tgz"; Helm
	// provenance files sign it by this name.
	Filename string
	// Data is the .tgz.
	Data []byte
	// Digest is the sha256 of Data, lowercase hex, checked against the
	// index (or the registry's layer digest).
	Digest string
	// Provenance is the .prov file, nil when the repository has none.
	Provenance []byte
}

// Download fetches the archive of v, checks its digest and that it holds
// the chart v names (CheckChart), and fetches its provenance file when
// there is one. A malformed entry is refused with v.Problem, a version
// without a digest with ErrNoDigest, a wrong digest with
// ErrDigestMismatch, another chart with ErrChartMismatch.
func (c *Client) Download(ctx context.Context, v Version) (*Archive, error) {
	a := &Archive{Name: v.Name, Version: v.Version, Filename: fmt.Sprintf("%s-%s.tgz", v.Name, v.Version)}
	if c.IsOCI() {
		if err := c.pullOCI(ctx, v, a); err != nil {
			return nil, err
		}
		return a, nil
	}
	if v.Problem != nil {
		return nil, fmt.Errorf("download from %s: %w", c.opts.URL, v.Problem)
	}
	if v.Digest == "" {
		return nil, fmt.Errorf("download %s %s from %s: %w: digests are mandatory; regenerate the index with 'gadgetpm repo build' or 'helm repo index'", v.Name, v.Version, c.opts.URL, ErrNoDigest)
	}
	if len(v.URLs) == 0 {
		return nil, fmt.Errorf("download %s %s from %s: index entry has no urls", v.Name, v.Version, c.opts.URL)
	}
	data, err := c.fetch(ctx, v.URLs[0], c.maxChart)
	if isNotFound(err) {
		return nil, fmt.Errorf("download %s %s: %s is listed in the index but missing from the repository: %w", v.Name, v.Version, v.URLs[0], err)
	}
	if err != nil {
		return nil, fmt.Errorf("download %s %s: %w", v.Name, v.Version, err)
	}
	a.Data = data
	a.Digest = SHA256(data)
	if a.Digest != v.Digest {
		return nil, fmt.Errorf("download %s %s from %s: %w: index says sha256:%s, archive is sha256:%s; the repository changed under its index or the download was tampered with", v.Name, v.Version, c.opts.URL, ErrDigestMismatch, v.Digest, a.Digest)
	}
	if path.Base(v.URLs[0]) != "" && strings.HasSuffix(v.URLs[0], ".tgz") {
		a.Filename = path.Base(v.URLs[0])
	}
	if err := c.CheckChart(ctx, a); err != nil {
		return nil, fmt.Errorf("download %s %s from %s: %w", v.Name, v.Version, c.opts.URL, err)
	}
	prov, err := c.fetch(ctx, v.URLs[0]+".prov", download.Limit{Bytes: download.MaxProvenanceBytes, What: "provenance file"})
	switch {
	case err == nil:
		a.Provenance = prov
	case isNotFound(err):
		// No provenance file: Verify decides whether that is acceptable.
	default:
		return nil, fmt.Errorf("download provenance of %s %s: %w", v.Name, v.Version, err)
	}
	return a, nil
}

// pullOCI pulls the chart (and provenance) layer of v's tag: the
// manifest and then each layer are checked by their descriptor sizes
// before they are read, and read through them.
func (c *Client) pullOCI(ctx context.Context, v Version, a *Archive) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tag := strings.ReplaceAll(v.Version, "+", "_")
	ref := c.ociRef(v.Name) + ":" + tag
	reg, err := download.Registry(c.ociRef(v.Name), &http.Client{Transport: c.bound(ctx)}, c.opts.PlainHTTP, c.opts.Username, c.opts.Password)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	mdesc, err := reg.Resolve(ctx, tag)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	mdata, err := download.Blob(ctx, reg.Manifests(), "manifest of "+ref, mdesc, download.Limit{Bytes: c.opts.MaxIndexBytes, What: "manifest", Flag: download.FlagMaxIndexSize})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mdata, &m); err != nil {
		return fmt.Errorf("pull %s: parse manifest: %w", ref, err)
	}
	var chart, prov *ocispec.Descriptor
	for i, l := range m.Layers {
		switch l.MediaType {
		case helmregistry.ChartLayerMediaType, helmregistry.LegacyChartLayerMediaType:
			chart = &m.Layers[i]
		case helmregistry.ProvLayerMediaType:
			prov = &m.Layers[i]
		}
	}
	if chart == nil {
		return fmt.Errorf("pull %s: the manifest has no chart layer", ref)
	}
	provLimit := download.Limit{Bytes: download.MaxProvenanceBytes, What: "provenance layer"}
	// Both sizes are checked before either layer is read.
	if err := download.CheckDescriptor("chart layer of "+ref, *chart, c.maxChart); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if prov != nil {
		if err := download.CheckDescriptor("provenance layer of "+ref, *prov, provLimit); err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	want := strings.TrimPrefix(chart.Digest.String(), "sha256:")
	if want == "" || want == chart.Digest.String() {
		return fmt.Errorf("pull %s: %w: the chart layer has no sha256 digest", ref, ErrNoDigest)
	}
	if v.Digest != "" && v.Digest != want {
		return fmt.Errorf("pull %s: %w: expected sha256:%s, the manifest says sha256:%s", ref, ErrDigestMismatch, v.Digest, want)
	}
	// ReadAll in download.Blob checks the bytes against the layer's
	// digest as it reads them.
	data, err := download.Blob(ctx, reg.Blobs(), "chart layer of "+ref, *chart, c.maxChart)
	if err != nil {
		if errors.Is(err, content.ErrMismatchedDigest) {
			return fmt.Errorf("pull %s: %w: %v", ref, ErrDigestMismatch, err)
		}
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	a.Data = data
	a.Digest = SHA256(a.Data)
	if err := c.CheckChart(ctx, a); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if prov != nil {
		p, err := download.Blob(ctx, reg.Blobs(), "provenance layer of "+ref, *prov, provLimit)
		if err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		a.Provenance = p
	}
	return nil
}

// SHA256 returns the lowercase hex sha256 of data.
func SHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// isNotFound reports a missing file or an HTTP 404; Helm's getter only
// says so in its message.
func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), ": 404 "))
}
