package pull_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gadgetpm/gadgetpm/packages/archive"
	"github.com/gadgetpm/gadgetpm/packages/download"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/packages/pull"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/packages/store"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// A node's download by digest is bounded as the cluster role's is: an
// endless HTTP body is cut at the limit, an OCI blob over it is refused by
// its size before it is read; the error names the limit's flag.
func TestFetchArchiveOverTheLimit(t *testing.T) {
	out := packagetest.Repo(t, t.TempDir(), packagetest.Source{Version: "1.0.0"})
	data, err := os.ReadFile(filepath.Join(out, "execsnoop-1.0.0.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha(data)
	hostile := packagetest.WriteIndex(t, t.TempDir(), packagetest.IndexEntry{Name: "execsnoop", URL: "endless/execsnoop-1.0.0.tgz", Digest: digest})
	httpURL, _ := packagetest.HostileRepo(t, hostile)
	ociURL, user, pass, ociCA := packagetest.OCIRegistryTLS(t, out)
	ns := env.Namespace(t)
	limit := int64(len(data) / 2)

	s, err := store.New(t.TempDir(), archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pull.New(pull.Options{Reader: env.Client, Store: s, Access: repoaccess.Policy{ClusterResourceNamespace: ns, MaxPackageBytes: limit}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec v1alpha1.PackageRepositorySpec
		want string
	}{
		{"endless http body", v1alpha1.PackageRepositorySpec{URL: httpURL, Insecure: true}, "endless/execsnoop-1.0.0.tgz is more than the limit"},
		{"oci blob", v1alpha1.PackageRepositorySpec{URL: ociURL, CABundle: ociCA, SecretRef: createSecret(t, ns, "oci", user, pass)}, "(its descriptor's size)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gp := installed(createRepo(t, tc.spec), "1.0.0", digest)
			err := p.FetchArchive(ctx, gp)
			if !errors.Is(err, download.ErrTooLarge) {
				t.Fatalf("fetch: %v, want ErrTooLarge", err)
			}
			for _, want := range []string{tc.want, "--max-package-size"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if _, ok := s.Archive(digest); ok {
				t.Error("the store holds the archive")
			}
		})
	}
}
