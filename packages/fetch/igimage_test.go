package fetch_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/fetch"
	"github.com/gadgetpm/gadgetpm/packages/igimage"
	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/pull"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

func imagePackage(repository, name, version string) *v1alpha1.GadgetPackage {
	return &v1alpha1.GadgetPackage{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "gadget"},
		Spec:       v1alpha1.GadgetPackageSpec{Repository: repository, Package: name, Version: version},
	}
}

// installAndLoad runs the Install and Load steps of d for gp.
func installAndLoad(t *testing.T, f *fetch.Fetcher, d fetch.Downloaded, gp *v1alpha1.GadgetPackage) (string, *loader.Package) {
	t.Helper()
	dir, err := f.Install(ctx, d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Load(ctx, dir, gp)
	if err != nil {
		t.Fatal(err)
	}
	return dir, p
}

// otherArch is an architecture that is not this machine's.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// TestInstallInspektorGadgetImage installs Inspektor Gadget images from
// a registry, a single manifest over plain HTTP (spec.insecure) and an
// index of two architectures over HTTPS with basic auth (spec.secretRef):
// the package's digest is the manifest's of this machine's architecture,
// its version the tag, it loads as a gadget without chart or hooks, a
// second download reuses the store, and a node pulls the same image by
// that digest alone.
func TestInstallInspektorGadgetImage(t *testing.T) {
	ns := env.Namespace(t)
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "reg", Namespace: ns},
		Data: map[string][]byte{"username": []byte(packagetest.OCIUsername), "password": []byte(packagetest.OCIPassword)}}); err != nil {
		t.Fatal(err)
	}
	img := packagetest.IGTraceExec(t)
	withBTF := packagetest.IGTraceExec(t, packagetest.IGLayer{MediaType: igimage.MediaTypeBTFGen, Data: []byte("btfgen archive")})

	plain := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	single := plain.Push(t, "trace_exec", "v1.0.0", img)

	// gadget.yaml as a layer rather than the manifest's config
	asLayer := plain.Push(t, "trace_exec", "v1.1.0", packagetest.IGImage{Layers: append(img.Layers, packagetest.IGLayer{MediaType: igimage.MediaTypeConfig, Data: img.Config})})

	secure := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{TLS: true, Auth: true})
	index, perArch := secure.PushIndex(t, "trace_exec", "v0.40.0", map[string]packagetest.IGImage{runtime.GOARCH: withBTF, otherArch(): img})

	for _, tt := range []struct {
		name, version string
		spec          v1alpha1.PackageRepositorySpec
		want          string // manifest digest
		btfgen        bool
	}{
		{"single manifest, plain HTTP", "v1.0.0", v1alpha1.PackageRepositorySpec{URL: plain.URL, Insecure: true}, single.Digest.Encoded(), false},
		{"gadget.yaml as a layer", "v1.1.0", v1alpha1.PackageRepositorySpec{URL: plain.URL, Insecure: true}, asLayer.Digest.Encoded(), false},
		{"index, HTTPS with basic auth", "v0.40.0", v1alpha1.PackageRepositorySpec{URL: secure.URL, CABundle: secure.CAPEM, SecretRef: &v1alpha1.SecretReference{Name: "reg", Namespace: ns}},
			perArch[runtime.GOARCH].Digest.Encoded(), true},
		{"index pinned by digest", index.Digest.String(), v1alpha1.PackageRepositorySpec{URL: secure.URL, CABundle: secure.CAPEM, SecretRef: &v1alpha1.SecretReference{Name: "reg", Namespace: ns}},
			perArch[runtime.GOARCH].Digest.Encoded(), true},
		{"index by semver constraint", ">=0.30", v1alpha1.PackageRepositorySpec{URL: secure.URL, CABundle: secure.CAPEM, SecretRef: &v1alpha1.SecretReference{Name: "reg", Namespace: ns}},
			perArch[runtime.GOARCH].Digest.Encoded(), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFetcher(t, t.TempDir(), ns)
			repo := createRepo(t, tt.spec)
			gp := imagePackage(repo, "trace_exec", tt.version)
			d, err := f.Download(ctx, gp)
			if err != nil {
				t.Fatal(err)
			}
			if d.Digest != tt.want || d.Cached || d.Name != "trace_exec" {
				t.Errorf("downloaded %+v, want digest %s, not cached", d, tt.want)
			}
			dir, p := installAndLoad(t, f, d, gp)
			if p.Image == nil || p.Image.Digest != "sha256:"+tt.want || p.Name != "trace_exec" || len(p.Hooks) != 0 {
				t.Fatalf("loaded %s %s, image %+v, %d hooks", p.Name, p.Version, p.Image, len(p.Hooks))
			}
			if p.Catalog == nil || len(p.Catalog.DataSources) != 1 || p.Catalog.DataSources[0].Name != "exec" {
				t.Errorf("catalog %+v: want the data source exec of the gadget", p.Catalog)
			}
			if p.Image.BTFGen != tt.btfgen {
				t.Errorf("btfgen kept: %v, want %v", p.Image.BTFGen, tt.btfgen)
			}
			if _, err := os.Stat(filepath.Join(dir, igimage.BTFGenFile)); (err == nil) != tt.btfgen {
				t.Errorf("%s: %v, want present=%v", igimage.BTFGenFile, err, tt.btfgen)
			}
			if again, err := f.Download(ctx, gp); err != nil || !again.Cached || again.Digest != tt.want {
				t.Errorf("second download %+v, %v: want the store's copy", again, err)
			}

			// A node pulls the digest the cluster role recorded.
			ns2, err := store.New(t.TempDir(), archive.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			puller, err := pull.New(pull.Options{Reader: env.Client, Store: ns2, Access: repoaccess.Policy{ClusterResourceNamespace: ns}})
			if err != nil {
				t.Fatal(err)
			}
			gp.Status.Digest = d.Digest
			if err := puller.FetchArchive(ctx, gp); err != nil {
				t.Fatal(err)
			}
			nodeDir, err := ns2.Unpack(ctx, d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(nodeDir, igimage.ProgramFile))
			if err != nil || !bytes.Equal(got, img.Layers[0].Data) {
				t.Errorf("node's %s: %d bytes, %v: want the image's program layer", igimage.ProgramFile, len(got), err)
			}
		})
	}
}

// counting counts the GETs of paths that contain sub.
func counting(sub string, n *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, sub) {
				n.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// tampering serves other bytes, of the same length, for blobs whose
// path contains sub.
func tampering(sub string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, sub) {
				next.ServeHTTP(w, r)
				return
			}
			rec := &recorder{header: http.Header{}}
			next.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			body := rec.body.Bytes()
			if len(body) > 0 {
				body[len(body)-1] ^= 0xff
			}
			w.WriteHeader(rec.code)
			_, _ = w.Write(body)
		})
	}
}

type recorder struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// TestBadInspektorGadgetImagesSayWhatIsWrong: each image gadgetpm cannot
// install fails with its condition reason and a message naming the
// package, the image and what was expected; an oversize layer is refused
// by its descriptor, before it is pulled.
func TestBadInspektorGadgetImagesSayWhatIsWrong(t *testing.T) {
	ns := env.Namespace(t)
	good := packagetest.IGTraceExec(t)
	program := good.Layers[0]
	wasm := packagetest.IGLayer{MediaType: igimage.MediaTypeWasm, Data: []byte("\x00asm\x01\x00\x00\x00")}
	badYAML := append(append([]byte(nil), good.Config...), []byte("frobnicate: true\n")...)
	badYAMLLine := bytes.Count(badYAML, []byte("\n"))

	var programGets atomic.Int64
	reg := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{})
	reg.Push(t, "no_program", "v1", packagetest.IGImage{Config: good.Config})
	reg.Push(t, "no_config", "v1", packagetest.IGImage{Layers: []packagetest.IGLayer{program}})
	reg.Push(t, "wasm", "v1", packagetest.IGTraceExec(t, wasm))
	reg.Push(t, "unknown_layer", "v1", packagetest.IGTraceExec(t, packagetest.IGLayer{MediaType: "application/vnd.gadget.future.v9+binary", Data: []byte("x")}))
	reg.PushIndex(t, "foreign", "v1", map[string]packagetest.IGImage{"s390x": good, "riscv64": good})
	reg.Push(t, "bad_yaml", "v1", packagetest.IGImage{Config: badYAML, Layers: []packagetest.IGLayer{program}})
	reg.Push(t, "good", "v1", good)
	repo := createRepo(t, v1alpha1.PackageRepositorySpec{URL: reg.URL, Insecure: true})

	// A registry that serves other bytes for the program layer, and one
	// watched for pulls of it.
	pd := digest.FromBytes(program.Data).String()
	tampered := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{Wrap: tampering(pd)})
	tampered.Push(t, "tampered", "v1", good)
	tamperedRepo := createRepo(t, v1alpha1.PackageRepositorySpec{URL: tampered.URL, Insecure: true})
	watched := packagetest.IGRegistry(t, packagetest.IGRegistryOptions{Wrap: counting("/blobs/"+pd, &programGets)})
	watched.Push(t, "big", "v1", good)
	watchedRepo := createRepo(t, v1alpha1.PackageRepositorySpec{URL: watched.URL, Insecure: true})

	f := newFetcher(t, t.TempDir(), ns)
	small, err := store.New(t.TempDir(), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	limited, err := fetch.New(fetch.Options{Reader: env.Client, Store: small,
		Access: repoaccess.Policy{ClusterResourceNamespace: ns, MaxPackageBytes: int64(len(program.Data) - 1)}})
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		pkg, version, repo string
		f                  *fetch.Fetcher
		reason             string
		want               []string
	}{
		{"no_program", "v1", repo, f, v1alpha1.ReasonLoadFailed, []string{"no layer of media type " + igimage.MediaTypeProgram, "eBPF object"}},
		{"no_config", "v1", repo, f, v1alpha1.ReasonLoadFailed, []string{"neither the manifest's config nor a layer has media type " + igimage.MediaTypeConfig, "gadget.yaml"}},
		{"wasm", "v1", repo, f, v1alpha1.ReasonLoadFailed, []string{"wasm layer", "wasm gadgets are not supported"}},
		{"unknown_layer", "v1", repo, f, v1alpha1.ReasonLoadFailed, []string{`"application/vnd.gadget.future.v9+binary"`, "does not know"}},
		{"foreign", "v1", repo, f, v1alpha1.ReasonLoadFailed, []string{"no manifest for linux/" + runtime.GOARCH, "linux/riscv64, linux/s390x"}},
		{"good", "v2", repo, f, v1alpha1.ReasonDownloadFailed, []string{`no version matching "v2"`, "available: v1"}},
		{"tampered", "v1", tamperedRepo, f, v1alpha1.ReasonVerifyFailed, []string{"digest mismatch", "program layer"}},
		{"big", "v1", watchedRepo, limited, v1alpha1.ReasonDownloadFailed, []string{"program layer", "over the size limit", "--max-package-size"}},
	} {
		t.Run(tt.pkg, func(t *testing.T) {
			_, err := tt.f.Download(ctx, imagePackage(tt.repo, tt.pkg, tt.version))
			if err == nil {
				t.Fatal("downloaded")
			}
			if got := fetch.ReasonOf(err, ""); got != tt.reason {
				t.Errorf("reason %q, want %q: %v", got, tt.reason, err)
			}
			for _, w := range append(tt.want, "package "+tt.pkg, "/gadgets/"+tt.pkg) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
		})
	}
	if n := programGets.Load(); n != 0 {
		t.Errorf("the oversize program layer was pulled %d times: want it refused by its descriptor", n)
	}

	// An image has no settings: spec.settings is refused, saying where
	// params go.
	withSettings := imagePackage(repo, "good", "v1")
	withSettings.Spec.Settings = &apiextensionsv1.JSON{Raw: []byte(`{"uid": 1000}`)}
	d, err := f.Download(ctx, withSettings)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := f.Install(ctx, d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Load(ctx, dir, withSettings)
	if got := fetch.ReasonOf(err, ""); got != v1alpha1.ReasonInvalidSettings || !strings.Contains(fmt.Sprint(err), "spec.parameters") {
		t.Errorf("load with spec.settings: reason %q: %v; want InvalidSettings pointing at a Trace's spec.parameters", got, err)
	}

	// gadget.yaml is checked as a chart package's: an unknown key is an
	// error with its line, naming the image.
	gp := imagePackage(repo, "bad_yaml", "v1")
	d, err = f.Download(ctx, gp)
	if err != nil {
		t.Fatal(err)
	}
	dir, err = f.Install(ctx, d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Load(ctx, dir, gp)
	if got := fetch.ReasonOf(err, ""); got != v1alpha1.ReasonLoadFailed {
		t.Fatalf("load: reason %q: %v", got, err)
	}
	for _, w := range []string{"bad_yaml", reg.Ref("bad_yaml", "v1"), "gadget/gadget.yaml:" + strconv.Itoa(badYAMLLine), "frobnicate"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("load error does not say %q: %v", w, err)
		}
	}
}
