package pull

import (
	"context"
	"fmt"
	"strings"

	"github.com/gadgetpm/gadgetpm/packages/download"
)

// blob reads the blob of digest from <registry>/<path>/<name>: a chart's
// archive is its manifest's chart layer, whose digest is the archive's
// sha256, so no manifest or tag needs to be read. The registry's answer
// says the blob's size before its body is read: over the limit, the body
// is never read.
func (r *repo) blob(ctx context.Context, name, digest string) ([]byte, error) {
	ref := r.base.Host + strings.TrimSuffix(r.base.Path, "/") + "/" + name
	reg, err := download.Registry(ref, r.http, r.plainHTTP, r.username, r.password)
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
