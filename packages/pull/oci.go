package pull

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"oras.land/oras-go/v2/registry/remote"

	"github.com/gadgetpm/gadgetpm/packages/download"
	"github.com/gadgetpm/gadgetpm/packages/igimage"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// blob reads the blob of digest from <registry>/<path>/<name>: a chart's
// archive is its manifest's chart layer, whose digest is the archive's
// sha256, so no manifest or tag needs to be read. The registry's answer
// says the blob's size before its body is read: over the limit, the body
// is never read.
func (r *repo) blob(ctx context.Context, name, digest string) ([]byte, error) {
	reg, ref, err := r.registry(name)
	if err != nil {
		return nil, err
	}
	subject := ref + "@sha256:" + digest
	desc, err := reg.Blobs().Resolve(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", subject, err)
	}
	data, err := download.Blob(ctx, reg.Blobs(), subject, desc, r.maxPackage)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	return data, nil
}

// registry is the registry repository <registry>/<path>/<name> and its
// reference.
func (r *repo) registry(name string) (*remote.Repository, string, error) {
	ref := r.base.Host + strings.TrimSuffix(r.base.Path, "/") + "/" + name
	reg, err := download.Registry(ref, r.http, r.plainHTTP, r.username, r.password)
	return reg, ref, err
}

// image stores the Inspektor Gadget image whose manifest has digest, when
// the registry holds a manifest of that digest; stored is false when it
// does not (a chart's digest is its layer's, a blob).
func (r *repo) image(ctx context.Context, s *store.Store, name, digest string) (stored bool, err error) {
	reg, ref, err := r.registry(name)
	if err != nil {
		return false, err
	}
	l := igimage.NewLimits(r.maxIndex.Bytes, r.maxPackage.Bytes)
	m, err := igimage.ResolveDigest(ctx, reg, ref, "sha256:"+digest, l)
	if errors.Is(err, igimage.ErrNotFound) || errors.Is(err, igimage.ErrNotImage) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("package %s: %w", name, err)
	}
	img, err := igimage.Pull(ctx, reg, m, l)
	if err != nil {
		return false, fmt.Errorf("package %s: %w", name, err)
	}
	if err := igimage.Store(s, img, igimage.InfoOf(img, name, "")); err != nil {
		return false, fmt.Errorf("package %s: %w", name, err)
	}
	return true, nil
}

// Registry is the registry repository of package name of the oci://
// PackageRepository pr, reached with its credentials, CA bundle, timeout
// and spec.insecure as the node pulls, with the limits of p's Access; ref
// is "<host>/<path>/<name>".
func (p *Puller) Registry(ctx context.Context, pr *v1alpha1.PackageRepository, name string) (reg *remote.Repository, ref string, l igimage.Limits, err error) {
	r, err := p.open(ctx, pr)
	if err != nil {
		return nil, "", l, err
	}
	if r.base.Scheme != "oci" {
		return nil, "", l, fmt.Errorf("spec.url %q is not an oci:// registry", pr.Spec.URL)
	}
	reg, ref, err = r.registry(name)
	return reg, ref, igimage.NewLimits(r.maxIndex.Bytes, r.maxPackage.Bytes), err
}
