package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/packagerepository"
	"github.com/gadgetpm/gadgetpm/packages/pull"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// Error is a failed step with the GadgetPackage condition reason to report
// (v1alpha1.ReasonIndexFailed, ReasonDownloadFailed, ReasonVerifyFailed,
// ReasonLoadFailed, ReasonInvalidSettings, or the reason of a repository
// repoaccess refuses, e.g. repoaccess.ReasonSecretNamespaceNotAllowed).
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the condition reason of err, or fallback.
func ReasonOf(err error, fallback string) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return fallback
}

func fail(reason string, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Options configure a Fetcher.
type Options struct {
	// Reader reads PackageRepositories and their Secrets. Required.
	Reader client.Reader
	// Store keeps archives by digest. Required.
	Store *store.Store
	// Loader options for Load.
	Loader loader.Options
	// Access is what repositories may reach and which Secrets they may
	// read (the cluster resource namespace). Required.
	Access repoaccess.Policy
}

// Fetcher runs the Download, Install and Load steps. It is safe for
// concurrent use.
type Fetcher struct {
	opts   Options
	puller *pull.Puller
	// images are the image references the last Download of each
	// GadgetPackage resolved (imageVersions).
	images imageVersions
}

// New returns a Fetcher.
func New(opts Options) (*Fetcher, error) {
	if opts.Reader == nil || opts.Store == nil {
		return nil, errors.New("create fetcher: Reader and Store are required")
	}
	p, err := pull.New(pull.Options{Reader: opts.Reader, Store: opts.Store, Access: opts.Access})
	if err != nil {
		return nil, fmt.Errorf("create fetcher: %w", err)
	}
	return &Fetcher{opts: opts, puller: p, images: imageVersions{m: map[string]imageVersion{}}}, nil
}

// FetchArchive puts the archive of gp's installed digest into the store,
// as a node does (packages/pull): the Trace controller's Fetcher when it
// shares this process's store.
func (f *Fetcher) FetchArchive(ctx context.Context, gp *v1alpha1.GadgetPackage) error {
	return f.puller.FetchArchive(ctx, gp)
}

// Downloaded is the outcome of Download.
type Downloaded struct {
	// Name and Version chosen.
	Name, Version string
	// Digest of the archive, lowercase hex sha256.
	Digest string
	// Cached is true when the store already had the archive.
	Cached bool
	// Verified is true when a provenance file was checked.
	Verified bool
	// Offline is true when the repository could not be read and the
	// archive of the installed digest (gp.Status.Digest) was reused.
	Offline bool
}

// Download resolves gp's version in its repository and puts the archive
// into the store. When the repository cannot be read but the store holds
// the archive of the installed digest, that is used (a restarted operator
// keeps running what it ran), once its provenance has passed the
// repository's spec.verify as a download's must.
func (f *Fetcher) Download(ctx context.Context, gp *v1alpha1.GadgetPackage) (Downloaded, error) {
	var pr v1alpha1.PackageRepository
	if err := f.opts.Reader.Get(ctx, client.ObjectKey{Name: gp.Spec.Repository}, &pr); err != nil {
		// Without the repository there is no spec.verify to check
		// against: the archive was verified when it was installed.
		if d, ok := f.offline(gp); ok {
			return d, nil
		}
		return Downloaded{}, fail(v1alpha1.ReasonIndexFailed, "read PackageRepository %s named by spec.repository: %w", gp.Spec.Repository, err)
	}
	c, err := packagerepository.ClientFor(ctx, f.opts.Reader, &pr, f.opts.Access)
	if err != nil {
		return Downloaded{}, fail(refusedOr(err, v1alpha1.ReasonIndexFailed), "PackageRepository %s: %w", pr.Name, err)
	}
	mode, keyring, err := packagerepository.Keyring(ctx, f.opts.Reader, &pr, f.opts.Access)
	if err != nil {
		return Downloaded{}, fail(refusedOr(err, v1alpha1.ReasonVerifyFailed), "PackageRepository %s: %w", pr.Name, err)
	}
	idx, err := c.Index(ctx, gp.Spec.Package)
	if err != nil {
		d, data, ok := f.offlineArchive(gp)
		if !ok {
			return Downloaded{}, fail(v1alpha1.ReasonIndexFailed, "PackageRepository %s: %w", pr.Name, err)
		}
		// The same check a download gets: a provenance the keyring does
		// not verify, or none under verify.mode Always, is refused.
		a := &chartrepo.Archive{Name: gp.Spec.Package, Version: d.Version, Filename: fmt.Sprintf("%s-%s.tgz", gp.Spec.Package, d.Version),
			Data: data, Digest: d.Digest, Provenance: f.opts.Store.Provenance(d.Digest)}
		res, verr := chartrepo.Verify(a, mode, keyring)
		if verr != nil {
			return Downloaded{}, fail(v1alpha1.ReasonVerifyFailed, "PackageRepository %s cannot be read (%v), and the stored archive of the installed version fails spec.verify: %w", pr.Name, err, verr)
		}
		d.Verified = res.Verified
		return d, nil
	}
	if c.IsOCI() {
		// An Inspektor Gadget image, else a chart (ErrNotImage).
		if d, ok, err := f.downloadImage(ctx, gp, &pr, mode); ok || err != nil {
			return d, err
		}
	}
	v, err := chartrepo.Resolve(idx, gp.Spec.Package, gp.Spec.Version)
	if err != nil {
		return Downloaded{}, fail(v1alpha1.ReasonDownloadFailed, "PackageRepository %s: %w", pr.Name, err)
	}
	d := Downloaded{Name: v.Name, Version: v.Version, Digest: v.Digest}
	// In flight: the store's garbage collection keeps it (store.Hold).
	defer f.opts.Store.Hold(v.Digest)()

	var a *chartrepo.Archive
	if data, ok := f.opts.Store.Archive(v.Digest); v.Digest != "" && ok {
		a = &chartrepo.Archive{Name: v.Name, Version: v.Version, Filename: fmt.Sprintf("%s-%s.tgz", v.Name, v.Version),
			Data: data, Digest: v.Digest, Provenance: f.opts.Store.Provenance(v.Digest)}
		d.Cached = true
		// The cached archive was checked under the name it was first
		// downloaded as; an index may list the same digest under another.
		if err := c.CheckChart(ctx, a); err != nil {
			return d, fail(v1alpha1.ReasonVerifyFailed, "PackageRepository %s: %w", pr.Name, err)
		}
	} else {
		a, err = c.Download(ctx, v)
		if err != nil {
			return d, fail(downloadReason(err), "%w", err)
		}
		d.Digest = a.Digest
	}
	res, err := chartrepo.Verify(a, mode, keyring)
	if err != nil {
		return d, fail(v1alpha1.ReasonVerifyFailed, "PackageRepository %s: %w", pr.Name, err)
	}
	d.Verified = res.Verified
	if !d.Cached {
		if err := f.opts.Store.PutArchive(a.Digest, a.Data); err != nil {
			return d, fail(v1alpha1.ReasonDownloadFailed, "%w", err)
		}
		if len(a.Provenance) > 0 {
			if err := f.opts.Store.PutProvenance(a.Digest, a.Provenance); err != nil {
				return d, fail(v1alpha1.ReasonDownloadFailed, "%w", err)
			}
		}
	}
	return d, nil
}

// downloadReason is the condition reason of a failed Download: an archive
// that cannot be shown to be the one the index promises fails
// verification, a malformed index entry fails the index.
func downloadReason(err error) string {
	switch {
	case errors.Is(err, chartrepo.ErrDigestMismatch), errors.Is(err, chartrepo.ErrNoDigest),
		errors.Is(err, chartrepo.ErrBadDigest), errors.Is(err, chartrepo.ErrChartMismatch):
		return v1alpha1.ReasonVerifyFailed
	case errors.Is(err, chartrepo.ErrBadIndexEntry):
		return v1alpha1.ReasonIndexFailed
	default:
		return v1alpha1.ReasonDownloadFailed
	}
}

func (f *Fetcher) offline(gp *v1alpha1.GadgetPackage) (Downloaded, bool) {
	d, _, ok := f.offlineArchive(gp)
	return d, ok
}

// offlineArchive is the store's archive of gp's installed digest, if any.
func (f *Fetcher) offlineArchive(gp *v1alpha1.GadgetPackage) (Downloaded, []byte, bool) {
	if gp.Status.Digest == "" {
		return Downloaded{}, nil, false
	}
	data, ok := f.opts.Store.Archive(gp.Status.Digest)
	if !ok {
		return Downloaded{}, nil, false
	}
	return Downloaded{Name: gp.Spec.Package, Version: gp.Status.Version, Digest: gp.Status.Digest, Cached: true, Offline: true}, data, true
}

// refusedOr is the reason of a repository repoaccess refuses, else
// fallback.
func refusedOr(err error, fallback string) string {
	if r := repoaccess.ReasonOf(err); r != "" {
		return r
	}
	return fallback
}

// Install extracts the archive of digest and returns the package
// directory.
func (f *Fetcher) Install(ctx context.Context, digest string) (string, error) {
	defer f.opts.Store.Hold(digest)()
	dir, err := f.opts.Store.Unpack(ctx, digest)
	if err != nil {
		return "", fail(v1alpha1.ReasonInstallFailed, "%w", err)
	}
	return dir, nil
}

// Load loads the package in dir and checks gp's settings against its
// schema.
func (f *Fetcher) Load(ctx context.Context, dir string, gp *v1alpha1.GadgetPackage) (*loader.Package, error) {
	p, err := loader.Load(ctx, dir, f.opts.Loader)
	if err != nil {
		return nil, fail(v1alpha1.ReasonLoadFailed, "%w", err)
	}
	if p.Image != nil {
		p.Version = f.images.version(gp, p)
	}
	if p.Image != nil && gp.Spec.Settings != nil && len(gp.Spec.Settings.Raw) > 0 && string(gp.Spec.Settings.Raw) != "{}" {
		return p, fail(v1alpha1.ReasonInvalidSettings, "spec.settings: package %s is the Inspektor Gadget image %s, which has no settings: remove spec.settings (a Trace's spec.parameters set the gadget's params)", gp.Spec.Package, p.Image.Image)
	}
	settings, err := Settings(gp)
	if err != nil {
		return p, fail(v1alpha1.ReasonInvalidSettings, "%w", err)
	}
	if err := loader.ValidateSettings(p, settings); err != nil {
		return p, fail(v1alpha1.ReasonInvalidSettings, "spec.settings: %w", err)
	}
	return p, nil
}

// Settings decodes gp's spec.settings.
func Settings(gp *v1alpha1.GadgetPackage) (map[string]any, error) {
	if gp.Spec.Settings == nil || len(gp.Spec.Settings.Raw) == 0 {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal(gp.Spec.Settings.Raw, &m); err != nil {
		return nil, fmt.Errorf("spec.settings of %s/%s: want an object: %w", gp.Namespace, gp.Name, err)
	}
	return m, nil
}
