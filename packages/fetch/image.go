package fetch

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"

	"oras.land/oras-go/v2/registry/remote"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/igimage"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// digestVersionRE is a spec.version that pins a manifest digest.
var digestVersionRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// downloadImage installs gp's package from the oci:// repository pr when
// it is an Inspektor Gadget image: ok is false, with no error, when the
// manifest spec.version names is not one (a chart). spec.version is a
// digest, a tag as written (e.g. "latest"), or a semver constraint over
// the tags, as for a chart.
func (f *Fetcher) downloadImage(ctx context.Context, gp *v1alpha1.GadgetPackage, pr *v1alpha1.PackageRepository, mode chartrepo.VerifyMode) (Downloaded, bool, error) {
	reg, ref, limits, err := f.puller.Registry(ctx, pr, gp.Spec.Package)
	if err != nil {
		return Downloaded{}, false, fail(refusedOr(err, v1alpha1.ReasonIndexFailed), "PackageRepository %s: %w", pr.Name, err)
	}
	reference, err := imageReference(ctx, reg, gp)
	if err != nil {
		return Downloaded{}, false, fail(v1alpha1.ReasonDownloadFailed, "PackageRepository %s: registry repository %s: %w; spec.version is a tag, a sha256 digest or a semver constraint over the tags", pr.Name, ref, err)
	}
	m, err := igimage.Resolve(ctx, reg, ref, reference, runtime.GOARCH, limits)
	if errors.Is(err, igimage.ErrNotImage) {
		return Downloaded{}, false, nil
	}
	if err != nil {
		return Downloaded{}, true, f.imageFailed(pr, gp, err)
	}
	d := Downloaded{Name: gp.Spec.Package, Version: igimage.PackageVersion(reference), Digest: m.Digest.Encoded()}
	if mode == chartrepo.VerifyAlways {
		return d, true, fail(v1alpha1.ReasonVerifyFailed, "PackageRepository %s: package %s: image %s carries no Helm provenance, and spec.verify.mode is Always: install it from a repository whose spec.verify.mode is IfPossible or Never (the image is still checked by digest)", pr.Name, gp.Spec.Package, m.Name())
	}
	// In flight: the store's garbage collection keeps it (store.Hold).
	defer f.opts.Store.Hold(d.Digest)()
	f.images.set(gp, d.Digest, d.Version)
	if igimage.Stored(f.opts.Store, d.Digest) {
		d.Cached = true
		return d, true, nil
	}
	img, err := igimage.Pull(ctx, reg, m, limits)
	if err != nil {
		return d, true, f.imageFailed(pr, gp, err)
	}
	if err := igimage.Store(f.opts.Store, img, igimage.InfoOf(img, gp.Spec.Package, d.Version)); err != nil {
		return d, true, fail(v1alpha1.ReasonDownloadFailed, "PackageRepository %s: package %s: %w", pr.Name, gp.Spec.Package, err)
	}
	return d, true, nil
}

// imageReference is the tag or digest spec.version names: a digest, a
// tag the registry has, else the newest tag that satisfies it as a semver
// constraint (the registry's tags, not only those Helm reads as chart
// versions: Inspektor Gadget tags "v0.40.0").
func imageReference(ctx context.Context, reg *remote.Repository, gp *v1alpha1.GadgetPackage) (string, error) {
	reference := strings.TrimPrefix(strings.TrimSpace(gp.Spec.Version), "@")
	if digestVersionRE.MatchString(reference) {
		return reference, nil
	}
	if _, err := reg.Resolve(ctx, reference); err == nil {
		return reference, nil
	}
	idx := &chartrepo.Index{Packages: map[string][]chartrepo.Version{}}
	if err := reg.Tags(ctx, "", func(tags []string) error {
		for _, t := range tags {
			idx.Packages[gp.Spec.Package] = append(idx.Packages[gp.Spec.Package], chartrepo.Version{Name: gp.Spec.Package, Version: t})
		}
		return nil
	}); err != nil {
		return "", fmt.Errorf("list tags: %w", err)
	}
	v, err := chartrepo.Resolve(idx, gp.Spec.Package, gp.Spec.Version)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(v.Version, "+", "_"), nil
}

// imageFailed is the error of an image that cannot be installed, with
// its condition reason: bytes that are not what their digest says fail
// verification, an image gadgetpm cannot run fails loading.
func (f *Fetcher) imageFailed(pr *v1alpha1.PackageRepository, gp *v1alpha1.GadgetPackage, err error) error {
	reason := v1alpha1.ReasonDownloadFailed
	switch {
	case errors.Is(err, igimage.ErrDigestMismatch):
		reason = v1alpha1.ReasonVerifyFailed
	case errors.Is(err, igimage.ErrUnsupported), errors.Is(err, igimage.ErrInvalid):
		reason = v1alpha1.ReasonLoadFailed
	}
	return fail(reason, "PackageRepository %s: package %s: %w", pr.Name, gp.Spec.Package, err)
}

// imageVersions remembers, per GadgetPackage, the version its last
// Download resolved and to which manifest: packages of the same manifest
// share its directory in the store, whose image.json keeps the reference
// of the first, and each package's status.version must be its own.
type imageVersions struct {
	mu sync.Mutex
	m  map[string]imageVersion // "<namespace>/<name>" -> the last resolution; guarded by mu
}

type imageVersion struct{ digest, version string }

func (v *imageVersions) set(gp *v1alpha1.GadgetPackage, digest, reference string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[gp.Namespace+"/"+gp.Name] = imageVersion{digest, reference}
}

// version is the version of the image package p loaded for gp: the
// version gp's Download resolved to p's manifest, else (after a restart
// that found the registry unreachable) the one p's directory records.
func (v *imageVersions) version(gp *v1alpha1.GadgetPackage, p *loader.Package) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if iv, ok := v.m[gp.Namespace+"/"+gp.Name]; ok && "sha256:"+iv.digest == p.Image.Digest {
		return iv.version
	}
	return p.Version
}
