package packagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/gadgetpm/gadgetpm/packages/download"
	"github.com/gadgetpm/gadgetpm/packages/igimage"
)

// IGLayer is one layer of an Inspektor Gadget image.
type IGLayer struct {
	MediaType string
	Data      []byte
}

// IGImage is an image in Inspektor Gadget's layout: its config (the
// gadget.yaml; nil: the empty JSON config) and its layers, in order.
type IGImage struct {
	Config []byte
	Layers []IGLayer
}

// IGTraceExec is bpf/testdata/ig_trace_exec.bpf.o (written against
// Inspektor Gadget's ABI) and its gadget.yaml as an image's program layer
// and config, as Inspektor Gadget builds them; extra layers follow.
func IGTraceExec(t testing.TB, extra ...IGLayer) IGImage {
	t.Helper()
	return IGTestGadget(t, "ig_trace_exec", extra...)
}

// IGTestGadget is IGTraceExec for any test gadget of bpf/testdata with a
// gadget.yaml: name is the base of <name>.bpf.o and <name>.gadget.yaml
// ("ig_snap_tasks", "ig_top_opens", "ig_fields_all").
func IGTestGadget(t testing.TB, name string, extra ...IGLayer) IGImage {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "bpf", "testdata")
	obj, err := os.ReadFile(filepath.Join(dir, name+".bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, name+".gadget.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return IGImage{Config: cfg, Layers: append([]IGLayer{{igimage.MediaTypeProgram, obj}}, extra...)}
}

// IGRegistryOptions configure IGRegistry.
type IGRegistryOptions struct {
	// TLS serves HTTPS (the certificate is IGReg.CAPEM); else plain HTTP.
	TLS bool
	// Auth asks for OCIUsername and OCIPassword.
	Auth bool
	// Wrap, when set, wraps the registry's handler (e.g. to tamper with
	// what it serves).
	Wrap func(http.Handler) http.Handler
}

// IGReg is an OCI registry (go-containerregistry's, in memory) holding
// Inspektor Gadget images under <host>/gadgets/<name>.
type IGReg struct {
	// URL is the PackageRepository URL, oci://<host>/gadgets.
	URL string
	// Host is the registry's host:port.
	Host string
	// CAPEM is the certificate to trust with TLS.
	CAPEM []byte
	opts  IGRegistryOptions
	http  *http.Client
}

// IGRegistry starts a registry on loopback that stops when the test ends.
func IGRegistry(t testing.TB, opts IGRegistryOptions) *IGReg {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if opts.Auth {
		h = basicAuth(h, OCIUsername, OCIPassword)
	}
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	r := &IGReg{opts: opts}
	var srv *httptest.Server
	if opts.TLS {
		srv = httptest.NewTLSServer(h)
		r.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		r.http = srv.Client()
	} else {
		srv = httptest.NewServer(h)
		r.http = &http.Client{}
	}
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://")
	r.URL = "oci://" + r.Host + "/gadgets"
	return r
}

// Ref is the image reference of name and tag, "<host>/gadgets/<name>:<tag>".
func (r *IGReg) Ref(name, tag string) string { return r.Host + "/gadgets/" + name + ":" + tag }

// Push pushes img as <host>/gadgets/<name>:<tag> (no tag when tag is
// empty) and returns its manifest's descriptor.
func (r *IGReg) Push(t testing.TB, name, tag string, img IGImage) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	repo := r.repo(t, name)
	config, data := ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data
	if img.Config != nil {
		config = ocispec.Descriptor{MediaType: igimage.MediaTypeConfig, Digest: digest.FromBytes(img.Config), Size: int64(len(img.Config))}
		data = img.Config
	}
	r.pushBlob(t, repo, config, data)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: igimage.ArtifactType, Config: ocispec.Descriptor{MediaType: config.MediaType, Digest: config.Digest, Size: config.Size}}
	for _, l := range img.Layers {
		d := ocispec.Descriptor{MediaType: l.MediaType, Digest: digest.FromBytes(l.Data), Size: int64(len(l.Data))}
		r.pushBlob(t, repo, d, l.Data)
		m.Layers = append(m.Layers, d)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if tag == "" {
		err = repo.Manifests().Push(ctx, desc, bytes.NewReader(data))
	} else {
		err = repo.Manifests().PushReference(ctx, desc, bytes.NewReader(data), tag)
	}
	if err != nil {
		t.Fatalf("push %s: %v", r.Ref(name, tag), err)
	}
	return desc
}

// PushIndex pushes one image per architecture (untagged) and an image
// index of them tagged <tag>; it returns the index's descriptor and each
// architecture's manifest descriptor.
func (r *IGReg) PushIndex(t testing.TB, name, tag string, archs map[string]IGImage) (ocispec.Descriptor, map[string]ocispec.Descriptor) {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	manifests := map[string]ocispec.Descriptor{}
	for _, arch := range slices.Sorted(maps.Keys(archs)) {
		d := r.Push(t, name, "", archs[arch])
		manifests[arch] = d
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		idx.Manifests = append(idx.Manifests, d)
	}
	data, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: idx.MediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := r.repo(t, name).Manifests().PushReference(context.Background(), desc, bytes.NewReader(data), tag); err != nil {
		t.Fatalf("push index %s: %v", r.Ref(name, tag), err)
	}
	return desc, manifests
}

func (r *IGReg) repo(t testing.TB, name string) *remote.Repository {
	t.Helper()
	user, pass := "", ""
	if r.opts.Auth {
		user, pass = OCIUsername, OCIPassword
	}
	repo, err := download.Registry(r.Host+"/gadgets/"+name, r.http, !r.opts.TLS, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func (r *IGReg) pushBlob(t testing.TB, repo *remote.Repository, d ocispec.Descriptor, data []byte) {
	t.Helper()
	ctx := context.Background()
	if ok, err := repo.Blobs().Exists(ctx, d); err == nil && ok {
		return
	}
	if err := repo.Blobs().Push(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatalf("push blob %s: %v", d.Digest, err)
	}
}
