package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gadgetpm/gadgetpm/packages/download"
	"github.com/gadgetpm/gadgetpm/packages/igimage"
)

// EnvRegistryPassword is read when --password is not given, so that the
// password need not show in the process list.
const EnvRegistryPassword = "GADGETPM_REGISTRY_PASSWORD"

// imageFlags reach the registry of `gadget run oci://...`.
type imageFlags struct {
	insecure bool
	username string
	password string
}

// splitImageRef splits "oci://<host>/<path>[:<tag>|@sha256:<hex>]" into
// the repository "<host>/<path>" and the tag or digest ("latest" when it
// names neither, as registries default).
func splitImageRef(src string) (repo, reference string, err error) {
	s := strings.TrimPrefix(src, "oci://")
	if i := strings.LastIndex(s, "@"); i >= 0 {
		repo, reference = s[:i], s[i+1:]
	} else if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		repo, reference = s[:i], s[i+1:]
	} else {
		repo, reference = s, "latest"
	}
	if !strings.Contains(repo, "/") || reference == "" {
		return "", "", fmt.Errorf("image %s: want oci://<registry>/<repository>[:<tag>|@sha256:<digest>], e.g. oci://ghcr.io/inspektor-gadget/gadget/trace_exec:v0.40.0", src)
	}
	return repo, reference, nil
}

// pullImage pulls the Inspektor Gadget image src into a temporary package
// directory, named after the image repository, for `gadget run`; remove
// deletes it.
func pullImage(ctx context.Context, src string, f imageFlags, stderr io.Writer) (dir string, remove func(), err error) {
	repo, reference, err := splitImageRef(src)
	if err != nil {
		return "", nil, err
	}
	password := f.password
	if password == "" {
		password = os.Getenv(EnvRegistryPassword)
	}
	if f.insecure && (f.username != "" || password != "") {
		return "", nil, fmt.Errorf("image %s: credentials are never sent over plain HTTP: drop --insecure (serve the registry over HTTPS) or the credentials", src)
	}
	reg, err := download.Registry(repo, &http.Client{Timeout: 2 * time.Minute}, f.insecure, f.username, password)
	if err != nil {
		return "", nil, err
	}
	limits := igimage.DefaultLimits()
	m, err := igimage.Resolve(ctx, reg, repo, reference, runtime.GOARCH, limits)
	if errors.Is(err, igimage.ErrNotImage) {
		return "", nil, fmt.Errorf("%w; to run a chart package, pull it and run its directory or .tgz", err)
	}
	if err != nil {
		if !f.insecure && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
			err = fmt.Errorf("%w\nthe registry speaks plain HTTP: add --insecure", err)
		}
		return "", nil, err
	}
	img, err := igimage.Pull(ctx, reg, m, limits)
	if err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp("", "gadgetpm-image-")
	if err != nil {
		return "", nil, fmt.Errorf("image %s: %w", src, err)
	}
	remove = func() { _ = os.RemoveAll(tmp) }
	name := path.Base(repo)
	dir = filepath.Join(tmp, name)
	if err := igimage.WriteDir(dir, img, igimage.InfoOf(img, name, igimage.PackageVersion(reference))); err != nil {
		remove()
		return "", nil, err
	}
	fmt.Fprintf(stderr, "gadgetpm: pulled %s (manifest %s)\n", m.Name(), m.Digest)
	return dir, remove, nil
}
