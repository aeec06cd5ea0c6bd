package pull

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/packages/download"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// DefaultTimeout of one request when the PackageRepository sets none, the
// same as the cluster role's repository client (packages/chartrepo).
const DefaultTimeout = 60 * time.Second

// ErrNotListed is returned when the repository no longer lists the
// archive of the package's digest.
var ErrNotListed = errors.New("not listed by the repository")

// Options configure a Puller.
type Options struct {
	// Reader reads PackageRepositories and their Secrets. Required.
	Reader client.Reader
	// Store receives the archives. Required.
	Store *store.Store
	// Access is what repositories may reach and which Secrets they may
	// read (the cluster resource namespace), as on the cluster role.
	// Required. Its MaxPackageBytes caps one archive (an OCI blob is
	// refused by its size before it is read) and its MaxIndexBytes one
	// index.yaml, as on the cluster role.
	Access repoaccess.Policy
}

// Puller fetches archives by digest. It is safe for concurrent use.
type Puller struct {
	opts Options
}

// New returns a Puller.
func New(opts Options) (*Puller, error) {
	if opts.Reader == nil || opts.Store == nil {
		return nil, errors.New("create puller: Reader and Store are required")
	}
	if opts.Access.MaxPackageBytes <= 0 {
		opts.Access.MaxPackageBytes = download.DefaultMaxPackageBytes
	}
	if opts.Access.MaxIndexBytes <= 0 {
		opts.Access.MaxIndexBytes = download.DefaultMaxIndexBytes
	}
	return &Puller{opts: opts}, nil
}

// FetchArchive makes sure the store holds the archive of gp's installed
// digest (status.digest), downloading it from gp's repository when it does
// not. Errors name the package, the repository and what to do.
func (p *Puller) FetchArchive(ctx context.Context, gp *v1alpha1.GadgetPackage) error {
	digest := gp.Status.Digest
	if digest == "" {
		return fmt.Errorf("package %s/%s records no digest in its status", gp.Namespace, gp.Name)
	}
	// In flight: the store's garbage collection keeps it (store.Hold).
	defer p.opts.Store.Hold(digest)()
	if _, ok := p.opts.Store.Archive(digest); ok {
		return nil
	}
	var pr v1alpha1.PackageRepository
	if err := p.opts.Reader.Get(ctx, client.ObjectKey{Name: gp.Spec.Repository}, &pr); err != nil {
		return fmt.Errorf("read PackageRepository %s named by spec.repository: %w", gp.Spec.Repository, err)
	}
	r, err := p.open(ctx, &pr)
	if err != nil {
		return fmt.Errorf("PackageRepository %s: %w", pr.Name, err)
	}
	if r.base.Scheme == "oci" {
		// An Inspektor Gadget image: the digest is its manifest's.
		stored, err := r.image(ctx, p.opts.Store, gp.Spec.Package, digest)
		if err != nil {
			return fmt.Errorf("PackageRepository %s: %w", pr.Name, err)
		}
		if stored {
			return nil
		}
	}
	data, err := r.archive(ctx, gp.Spec.Package, digest)
	if err != nil {
		return fmt.Errorf("PackageRepository %s: %w", pr.Name, err)
	}
	if got := sum(data); got != digest {
		return fmt.Errorf("PackageRepository %s: package %s: the archive is sha256:%s, the package's status records sha256:%s; the repository changed under its index or the download was tampered with", pr.Name, gp.Spec.Package, got, digest)
	}
	if err := p.opts.Store.PutArchive(digest, data); err != nil {
		return fmt.Errorf("store package %s: %w", gp.Spec.Package, err)
	}
	return nil
}

// repo is one repository, ready to be read.
type repo struct {
	base               *url.URL
	username, password string
	http               *http.Client
	plainHTTP          bool
	maxPackage         download.Limit
	maxIndex           download.Limit
}

func (p *Puller) open(ctx context.Context, pr *v1alpha1.PackageRepository) (*repo, error) {
	u, err := url.Parse(pr.Spec.URL)
	if err != nil {
		return nil, fmt.Errorf("spec.url: parse %q: %w", pr.Spec.URL, err)
	}
	a, err := p.opts.Access.Access(ctx, p.opts.Reader, pr)
	if err != nil {
		return nil, err
	}
	r := &repo{base: u, plainHTTP: a.PlainHTTP, username: a.Username, password: a.Password,
		maxPackage: download.Limit{Bytes: p.opts.Access.MaxPackageBytes, What: "package archive", Flag: download.FlagMaxPackageSize},
		maxIndex:   download.Limit{Bytes: p.opts.Access.MaxIndexBytes, What: "index", Flag: download.FlagMaxIndexSize}}
	timeout := pr.Spec.Timeout.Duration
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(pr.Spec.CABundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pr.Spec.CABundle) {
			return nil, errors.New("spec.caBundle holds no PEM certificate: give PEM-encoded CA certificates")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	r.http = &http.Client{Transport: tr, Timeout: timeout}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("spec.url %q has no host", pr.Spec.URL)
		}
	case "file":
		if u.Path == "" || u.Host != "" {
			return nil, fmt.Errorf("spec.url %q: want file:///absolute/dir", pr.Spec.URL)
		}
	case "oci":
		if u.Host == "" {
			return nil, fmt.Errorf("spec.url %q has no registry host", pr.Spec.URL)
		}
	default:
		return nil, fmt.Errorf("spec.url %q: scheme %q is not supported: use https://, http://, file:// or oci://", pr.Spec.URL, u.Scheme)
	}
	return r, nil
}

// archive returns the bytes the repository lists for package name under
// digest.
func (r *repo) archive(ctx context.Context, name, digest string) ([]byte, error) {
	if r.base.Scheme == "oci" {
		return r.blob(ctx, name, digest)
	}
	data, err := r.get(ctx, "index.yaml", r.maxIndex)
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	ref, err := findURL(data, name, digest)
	if err != nil {
		return nil, err
	}
	data, err = r.get(ctx, ref, r.maxPackage)
	if err != nil {
		return nil, fmt.Errorf("download %s (sha256:%s): %w", name, digest, err)
	}
	return data, nil
}

// index is the part of a Helm repository index.yaml a node reads. Entries
// are decoded loosely, so that an entry written wrongly (which the cluster
// role reports) does not hide the others.
type index struct {
	Entries map[string][]map[string]any `json:"entries"`
}

// findURL returns the first URL of the entry of name whose digest is
// digest.
func findURL(data []byte, name, digest string) (string, error) {
	var idx index
	if err := yaml.Unmarshal(data, &idx); err != nil {
		return "", fmt.Errorf("parse index.yaml: %w", err)
	}
	for _, e := range idx.Entries[name] {
		d, _ := e["digest"].(string)
		if strings.ToLower(strings.TrimPrefix(d, "sha256:")) != digest {
			continue
		}
		urls, _ := e["urls"].([]any)
		if len(urls) == 0 {
			return "", fmt.Errorf("index entry of %s with sha256:%s has no urls", name, digest)
		}
		u, ok := urls[0].(string)
		if !ok || u == "" {
			return "", fmt.Errorf("index entry of %s with sha256:%s: urls[0] is not a URL", name, digest)
		}
		return u, nil
	}
	return "", fmt.Errorf("package %s with sha256:%s (the digest the package's status records): %w; the package is being updated, or its version was removed from the repository", name, digest, ErrNotListed)
}

// get reads ref, a path relative to the repository or an absolute URL, at
// most limit bytes. Credentials go to the repository's own host only.
func (r *repo) get(ctx context.Context, ref string, limit download.Limit) ([]byte, error) {
	if r.base.Scheme == "file" {
		p := ref
		if u, err := url.Parse(ref); err == nil && u.Scheme == "file" {
			p = u.Path
		} else if !filepath.IsAbs(p) {
			p = filepath.Join(r.base.Path, filepath.FromSlash(ref))
		}
		return download.File(p, limit)
	}
	full, err := resolve(r.base, ref)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "gadgetpm")
	if (r.username != "" || r.password != "") && full.Host == r.base.Host {
		req.SetBasicAuth(r.username, r.password)
	}
	return download.Get(r.http, req, limit)
}

// resolve resolves ref against the repository's URL as Helm does: the
// base is a directory, its query is kept.
func resolve(base *url.URL, ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("resolve %q against %s: %w", ref, base.Redacted(), err)
	}
	if u.IsAbs() {
		return u, nil
	}
	b := *base
	b.Path = strings.TrimSuffix(b.Path, "/") + "/"
	if b.RawPath != "" {
		b.RawPath = strings.TrimSuffix(b.RawPath, "/") + "/"
	}
	out := b.ResolveReference(u)
	out.RawQuery = base.RawQuery
	return out, nil
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
