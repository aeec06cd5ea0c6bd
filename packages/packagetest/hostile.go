package packagetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	helmregistry "helm.sh/helm/v3/pkg/registry"

	"github.com/gadgetpm/gadgetpm/packages/download"
)

// HostileSize is how much a HostileRepo path sends: 2 GiB.
const HostileSize = 2 << 30

// HostileRepo serves the files of dir over plain HTTP like a chart
// repository, but answers any path under /endless/ with HostileSize zero
// bytes and no Content-Length, and any path under /declared/ with a
// Content-Length of HostileSize before the same bytes; both stop as soon
// as the client goes away. It returns the URL and how many bytes the
// hostile paths have written so far. The server stops when the test ends.
func HostileRepo(t testing.TB, dir string) (url string, written func() int64) {
	t.Helper()
	var n atomic.Int64
	files := http.FileServer(http.Dir(dir))
	zeros := make([]byte, 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/endless/"):
		case strings.HasPrefix(r.URL.Path, "/declared/"):
			w.Header().Set("Content-Length", strconv.Itoa(HostileSize))
		default:
			files.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		for sent := 0; sent < HostileSize; sent += len(zeros) {
			m, err := w.Write(zeros)
			n.Add(int64(m))
			if err != nil || r.Context().Err() != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, n.Load
}

// PushOCIClaiming pushes to <registry>/<path>/<name>:<tag> of a registry
// OCIRegistry (caPEM nil) or OCIRegistryTLS (caPEM its certificate)
// started, url its oci:// URL, a Helm chart manifest whose
// chart layer descriptor claims size bytes, while the blob it names holds
// a few bytes: a registry that lies, or a chart too large to pull, as a
// puller sees it before the pull.
func PushOCIClaiming(t testing.TB, url string, caPEM []byte, name, tag string, size int64) {
	t.Helper()
	ctx := context.Background()
	ref := strings.TrimPrefix(url, "oci://") + "/" + name
	c := http.DefaultClient
	if caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		c = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	reg, err := download.Registry(ref, c, caPEM == nil, OCIUsername, OCIPassword)
	if err != nil {
		t.Fatal(err)
	}
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := reg.Blobs().Push(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatalf("push blob to %s: %v", ref, err)
		}
		return d
	}
	config := push(helmregistry.ConfigMediaType, []byte(`{"name":"`+name+`","version":"`+tag+`","apiVersion":"v2"}`))
	layer := push(helmregistry.ChartLayerMediaType, []byte("not really a chart"))
	layer.Size = size
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
	if err := reg.Manifests().PushReference(ctx, md, bytes.NewReader(m), tag); err != nil {
		t.Fatalf("push manifest %s:%s: %v", ref, tag, err)
	}
}
