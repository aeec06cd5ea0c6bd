package igimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/gadgetpm/gadgetpm/packages/download"
)

// Media types of the layers of an Inspektor Gadget image.
const (
	MediaTypeProgram = "application/vnd.gadget.ebpf.program.v1+binary"
	MediaTypeConfig  = "application/vnd.gadget.config.v1+yaml"
	MediaTypeBTFGen  = "application/vnd.gadget.btfgen.v1+binary"
	MediaTypeWasm    = "application/vnd.gadget.wasm.program.v1+binary"
	// ArtifactType marks a manifest as a gadget's.
	ArtifactType = "application/vnd.gadget.v1+binary"
	// mediaTypePrefix is what every gadget layer's media type starts with.
	mediaTypePrefix = "application/vnd.gadget."
	// mediaTypeDockerList is Docker's name for an image index.
	mediaTypeDockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Errors a caller may match with errors.Is.
var (
	// ErrNotImage: the manifest has no gadget layer (e.g. a Helm chart).
	ErrNotImage = errors.New("not an Inspektor Gadget image")
	// ErrNotFound: the registry has no such tag or digest.
	ErrNotFound = errors.New("not found")
	// ErrUnsupported: the image is one gadgetpm cannot run (wasm, no
	// manifest for this architecture, a layer it does not know).
	ErrUnsupported = errors.New("not supported")
	// ErrInvalid: the image lacks a layer it needs or has one twice.
	ErrInvalid = errors.New("invalid Inspektor Gadget image")
	// ErrDigestMismatch: bytes the registry served do not hash to their
	// descriptor's digest.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// Limits bound what one image may cost.
type Limits struct {
	// Manifest caps each index and manifest (--max-index-size).
	Manifest download.Limit
	// Layer caps each layer, checked by its descriptor before it is
	// pulled (--max-package-size).
	Layer download.Limit
}

// DefaultLimits are the limits of both roles' defaults.
func DefaultLimits() Limits {
	return NewLimits(download.DefaultMaxIndexBytes, download.DefaultMaxPackageBytes)
}

// NewLimits are the limits of the operator's --max-index-size and
// --max-package-size.
func NewLimits(maxManifest, maxLayer int64) Limits {
	return Limits{
		Manifest: download.Limit{Bytes: maxManifest, What: "manifest", Flag: download.FlagMaxIndexSize},
		Layer:    download.Limit{Bytes: maxLayer, What: "layer", Flag: download.FlagMaxPackageSize},
	}
}

// Manifest is the manifest of one architecture of an image.
type Manifest struct {
	// Ref is the repository, "<host>/<path>".
	Ref string
	// Reference is the tag or digest asked for.
	Reference string
	// Digest of the manifest (of this architecture's, under an index).
	Digest digest.Digest
	// Data is the manifest as served, hashing to Digest.
	Data []byte
	// Manifest is Data parsed.
	Manifest ocispec.Manifest
	// Architecture of the manifest, as its index says; empty without an
	// index.
	Architecture string
}

// Name is the image reference with the tag or digest asked for, for
// messages: "registry/repo:tag".
func (m *Manifest) Name() string { return refName(m.Ref, m.Reference) }

func refName(ref, reference string) string {
	if strings.Contains(reference, ":") {
		return ref + "@" + reference
	}
	return ref + ":" + reference
}

// Resolve reads the manifest that reference (a tag or a digest) names in
// reg, the repository ref ("<host>/<path>"). Under an image index it
// picks the manifest of arch (runtime.GOARCH). A manifest with no gadget
// layer is ErrNotImage, so a caller can read it as something else; so
// is an index when arch is empty.
func Resolve(ctx context.Context, reg *remote.Repository, ref, reference, arch string, l Limits) (*Manifest, error) {
	name := refName(ref, reference)
	desc, err := reg.Resolve(ctx, reference)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, fmt.Errorf("image %s: %w in the registry: check the tag (or digest) and the repository path", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: resolve: %w", name, err)
	}
	data, err := fetch(ctx, reg.Manifests(), "manifest of "+name, desc, l.Manifest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	m := &Manifest{Ref: ref, Reference: reference}
	mt := mediaType(desc.MediaType, data)
	if (mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerList) && arch == "" {
		return nil, fmt.Errorf("image %s: %w: an image index where a manifest was expected", name, ErrNotImage)
	}
	if mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerList {
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("image %s: parse image index: %w", name, err)
		}
		pick, err := pickArch(idx, arch)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
		desc = pick
		m.Architecture = arch
		if data, err = fetch(ctx, reg.Manifests(), fmt.Sprintf("%s manifest of %s", arch, name), desc, l.Manifest); err != nil {
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
		if mt = mediaType(desc.MediaType, data); mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerList {
			return nil, fmt.Errorf("image %s: the %s entry of its index is another index: %w (want a manifest per architecture)", name, arch, ErrUnsupported)
		}
	}
	if err := json.Unmarshal(data, &m.Manifest); err != nil {
		return nil, fmt.Errorf("image %s: parse manifest: %w", name, err)
	}
	m.Digest, m.Data = desc.Digest, data
	if m.Digest.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("image %s: manifest digest %s: %w: want a sha256 digest", name, m.Digest, ErrUnsupported)
	}
	if m.Architecture == "" && !hasGadgetLayer(m.Manifest) {
		return nil, fmt.Errorf("image %s: %w: no layer of media type %s*", name, ErrNotImage, mediaTypePrefix)
	}
	return m, nil
}

// ResolveDigest is Resolve of a manifest digest ("sha256:<hex>"), as a
// node reads the manifest the cluster role chose: an index there is
// ErrNotImage, as is a chart's manifest, and a digest the registry does
// not hold as a manifest is ErrNotFound.
func ResolveDigest(ctx context.Context, reg *remote.Repository, ref, dgst string, l Limits) (*Manifest, error) {
	return Resolve(ctx, reg, ref, dgst, "", l)
}

// mediaType is the descriptor's media type, else the document's own.
func mediaType(fromDesc string, data []byte) string {
	if fromDesc != "" && fromDesc != "application/octet-stream" {
		return fromDesc
	}
	var v struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(data, &v)
	return v.MediaType
}

func pickArch(idx ocispec.Index, arch string) (ocispec.Descriptor, error) {
	var have []string
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			have = append(have, "(no platform)")
			continue
		}
		if d.Platform.Architecture == arch && (d.Platform.OS == "" || d.Platform.OS == "linux") {
			return d, nil
		}
		have = append(have, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	sort.Strings(have)
	have = slices.Compact(have)
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return ocispec.Descriptor{}, fmt.Errorf("its image index has no manifest for linux/%s, the architecture this runs on: %w (the index has %s); build and push the gadget for linux/%s", arch, ErrUnsupported, list, arch)
}

// hasGadgetLayer reports whether m is a gadget's: its artifact type, its
// config (Inspektor Gadget keeps gadget.yaml there) or a layer says so.
func hasGadgetLayer(m ocispec.Manifest) bool {
	if m.ArtifactType == ArtifactType || m.Config.MediaType == MediaTypeConfig {
		return true
	}
	for _, l := range m.Layers {
		if strings.HasPrefix(l.MediaType, mediaTypePrefix) {
			return true
		}
	}
	return false
}

// layers are the descriptors of a manifest's layers gadgetpm reads.
type layers struct {
	program, config, btfgen *ocispec.Descriptor
}

// check sorts the manifest's layers, refusing a wasm layer, a layer it
// does not know, a layer given twice and a missing program or
// gadget.yaml. gadget.yaml is the manifest's config, as Inspektor Gadget
// builds images, or a layer.
func (m *Manifest) check() (layers, error) {
	var ls layers
	if m.Manifest.Config.MediaType == MediaTypeConfig {
		ls.config = &m.Manifest.Config
	}
	for i := range m.Manifest.Layers {
		l := &m.Manifest.Layers[i]
		var slot **ocispec.Descriptor
		switch l.MediaType {
		case MediaTypeProgram:
			slot = &ls.program
		case MediaTypeConfig:
			slot = &ls.config
		case MediaTypeBTFGen:
			slot = &ls.btfgen
		case MediaTypeWasm:
			return ls, fmt.Errorf("image %s has a wasm layer (%s): wasm gadgets are %w by gadgetpm; use a build of the gadget without wasm", m.Name(), MediaTypeWasm, ErrUnsupported)
		default:
			return ls, fmt.Errorf("image %s: layer %d has media type %q, which gadgetpm does not know: %w (an Inspektor Gadget image has the layers %s, %s and optionally %s)",
				m.Name(), i, l.MediaType, ErrUnsupported, MediaTypeProgram, MediaTypeConfig, MediaTypeBTFGen)
		}
		if *slot != nil {
			return ls, fmt.Errorf("image %s: %w: two layers (or the config and a layer) of media type %s", m.Name(), ErrInvalid, l.MediaType)
		}
		*slot = l
	}
	if ls.program == nil {
		return ls, fmt.Errorf("image %s: %w: the manifest has no layer of media type %s (the gadget's eBPF object)", m.Name(), ErrInvalid, MediaTypeProgram)
	}
	if ls.config == nil {
		return ls, fmt.Errorf("image %s: %w: neither the manifest's config nor a layer has media type %s (the gadget's gadget.yaml)", m.Name(), ErrInvalid, MediaTypeConfig)
	}
	return ls, nil
}

// Image is an image's content.
type Image struct {
	*Manifest
	// Program is the eBPF object, Config the gadget.yaml, BTFGen the
	// btfgen layer (nil without one).
	Program, Config, BTFGen []byte
}

// Pull checks m's layers (each descriptor's size against l before any
// is read) and pulls them, each checked against its digest as it is
// read.
func Pull(ctx context.Context, reg *remote.Repository, m *Manifest, l Limits) (*Image, error) {
	ls, err := m.check()
	if err != nil {
		return nil, err
	}
	named := []struct {
		what string
		desc *ocispec.Descriptor
		out  *[]byte
	}{{"program layer", ls.program, nil}, {"gadget.yaml", ls.config, nil}, {"btfgen layer", ls.btfgen, nil}}
	img := &Image{Manifest: m}
	named[0].out, named[1].out, named[2].out = &img.Program, &img.Config, &img.BTFGen
	for _, n := range named {
		if n.desc == nil {
			continue
		}
		if err := download.CheckDescriptor(fmt.Sprintf("%s of %s", n.what, m.Name()), *n.desc, l.Layer); err != nil {
			return nil, fmt.Errorf("image %s: %w", m.Name(), err)
		}
	}
	for _, n := range named {
		if n.desc == nil {
			continue
		}
		data, err := fetch(ctx, reg.Blobs(), fmt.Sprintf("%s %s of %s", n.what, n.desc.Digest, m.Name()), *n.desc, l.Layer)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", m.Name(), err)
		}
		*n.out = data
	}
	return img, nil
}

// fetch is download.Blob, with a digest that does not match wrapping
// ErrDigestMismatch.
func fetch(ctx context.Context, f content.Fetcher, subject string, desc ocispec.Descriptor, l download.Limit) ([]byte, error) {
	data, err := download.Blob(ctx, f, subject, desc, l)
	if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) {
		return nil, fmt.Errorf("%w: %v; the registry served other bytes than its descriptor names, or the download was tampered with", ErrDigestMismatch, err)
	}
	return data, err
}
