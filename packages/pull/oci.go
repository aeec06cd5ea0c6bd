package pull

import (
	"context"
	"fmt"
	"strings"

	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// blob reads the blob of digest from <registry>/<path>/<name>: a chart's
// archive is its manifest's chart layer, whose digest is the archive's
// sha256, so no manifest or tag needs to be read.
func (r *repo) blob(ctx context.Context, name, digest string) ([]byte, error) {
	ref := r.base.Host + strings.TrimSuffix(r.base.Path, "/") + "/" + name
	reg, err := remote.NewRepository(ref)
	if err != nil {
		return nil, fmt.Errorf("registry repository %s: %w", ref, err)
	}
	reg.PlainHTTP = r.plainHTTP
	// Only the repository's own credentials count: never the machine's
	// docker login state.
	ac := &auth.Client{Client: r.http, Cache: auth.NewCache()}
	if r.username != "" || r.password != "" {
		ac.Credential = auth.StaticCredential(r.base.Host, auth.Credential{Username: r.username, Password: r.password})
	}
	reg.Client = ac
	desc, rc, err := reg.Blobs().FetchReference(ctx, ref+"@sha256:"+digest)
	if err != nil {
		return nil, fmt.Errorf("pull %s@sha256:%s: %w", ref, digest, err)
	}
	defer rc.Close()
	if desc.Size > MaxArchiveBytes {
		return nil, fmt.Errorf("pull %s@sha256:%s: %d bytes, over the size limit of %d bytes", ref, digest, desc.Size, MaxArchiveBytes)
	}
	data, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, fmt.Errorf("pull %s@sha256:%s: %w", ref, digest, err)
	}
	return data, nil
}
