package gadgetpackage_test

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

type entry = packagetest.Entry

func tgz(t *testing.T, entries ...entry) []byte { return packagetest.TGZ(t, entries...) }

// packed packs a package source with the project's own packer.
func packed(t *testing.T, s packagetest.Source) []byte {
	t.Helper()
	dir := t.TempDir()
	src := packagetest.Write(t, dir, s)
	dest := filepath.Join(dir, "out.tgz")
	if err := chartrepo.Pack(src, s.Name, dest); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// served is one version a hand-written repository offers.
type served struct {
	name     string
	data     []byte
	noDigest bool
}

// writeRepo writes each archive as <name>-1.0.0.tgz under dir and an
// index.yaml listing them with their sha256 digests (none for noDigest),
// and returns dir.
func writeRepo(t *testing.T, dir string, pkgs ...served) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("apiVersion: v1\nentries:\n")
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].name < pkgs[j].name })
	for _, p := range pkgs {
		file := p.name + "-1.0.0.tgz"
		if err := os.WriteFile(filepath.Join(dir, file), p.data, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  %s:\n  - apiVersion: v2\n    name: %s\n    version: 1.0.0\n    created: \"2026-01-02T03:04:05Z\"\n    urls:\n    - %s\n", p.name, p.name, file)
		if !p.noDigest {
			sum := sha256.Sum256(p.data)
			fmt.Fprintf(&b, "    digest: %s\n", hex.EncodeToString(sum[:]))
		}
	}
	b.WriteString("generated: \"2026-01-02T03:04:05Z\"\n")
	if err := os.WriteFile(filepath.Join(dir, "index.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBadPackagesFailOnlyThemselves drives every kind of bad package
// through a GadgetPackage at once, next to a good one in the same
// namespace: each bad one ends Ready=False with its reason and a message
// naming the file and what was expected, with a Warning Event, and the
// good one stays Ready and Running throughout.
func TestBadPackagesFailOnlyThemselves(t *testing.T) {
	startWith(t, setup{hookTimeout: time.Second})
	ns := env.Namespace(t)
	nobtf, err := os.ReadFile(packagetest.Testdata("bpf", "nobtf.bpf.o"))
	if err != nil {
		t.Fatal(err)
	}
	many := []entry{{Name: "many-files/Chart.yaml", Body: "apiVersion: v2\nname: many-files\nversion: 1.0.0\n"}}
	for i := 0; i < 10000; i++ {
		many = append(many, entry{Name: fmt.Sprintf("many-files/templates/f%d.yaml", i)})
	}
	chart := func(name string) entry {
		return entry{Name: name + "/Chart.yaml", Body: "apiVersion: v2\nname: " + name + "\nversion: 1.0.0\n"}
	}
	cases := []struct {
		name   string
		data   []byte
		reason string
		want   []string // in the Ready message and the Event
	}{
		{"path-traversal", tgz(t, chart("path-traversal"), entry{Name: "path-traversal/../../etc/cron.d/x", Body: "* * * * * root sh\n"}),
			v1alpha1.ReasonInstallFailed, []string{`"path-traversal/../../etc/cron.d/x" has a ".." component`}},
		{"absolute-path", tgz(t, chart("absolute-path"), entry{Name: "/etc/passwd", Body: "root::0:0::/:/bin/sh\n"}),
			v1alpha1.ReasonInstallFailed, []string{`"/etc/passwd" has an absolute path`}},
		{"symlink-escape", tgz(t, chart("symlink-escape"), entry{Name: "symlink-escape/templates/x", Typ: tar.TypeSymlink, Linkname: "../../../etc/shadow"}),
			v1alpha1.ReasonInstallFailed, []string{"symlink-escape/templates/x", "outside the package"}},
		{"device-file", tgz(t, chart("device-file"), entry{Name: "device-file/null", Typ: tar.TypeChar}),
			v1alpha1.ReasonInstallFailed, []string{`"device-file/null" is a device file`}},
		{"sparse-file", packagetest.SparseTGZ(t, "sparse-file", "big"),
			v1alpha1.ReasonInstallFailed, []string{`"sparse-file/big" is 68719476736 bytes`, "limit"}},
		{"many-files", tgz(t, many...),
			v1alpha1.ReasonInstallFailed, []string{"more than 10000 entries"}},
		{"no-chart", packed(t, packagetest.Source{Name: "no-chart", ChartYAML: packagetest.Omit}),
			v1alpha1.ReasonLoadFailed, []string{"Chart.yaml: missing"}},
		{"bad-schema", packed(t, packagetest.Source{Name: "bad-schema", Schema: `{"type": "nonsense"}`}),
			v1alpha1.ReasonLoadFailed, []string{"values.schema.json: invalid JSON schema"}},
		{"unknown-key", packed(t, packagetest.Source{Name: "unknown-key", Gadget: "name: x\ndescription: y\ncolour: blue\n"}),
			v1alpha1.ReasonLoadFailed, []string{"gadget/gadget.yaml:3: field colour is not a known key of the gadget"}},
		{"no-btf", packed(t, packagetest.Source{Name: "no-btf", Program: nobtf}),
			v1alpha1.ReasonLoadFailed, []string{"gadget/program.bpf.o: no usable BTF"}},
		{"hook-fails", packed(t, packagetest.Source{Name: "hook-fails", Hooks: map[string]string{"fail.sh": "#!/bin/sh\necho 'cannot reach the API' >&2\nexit 3\n"}}),
			v1alpha1.ReasonLoadFailed, []string{"hooks/fail.sh: --config exited with code 3: cannot reach the API"}},
		{"hook-garbage", packed(t, packagetest.Source{Name: "hook-garbage", Hooks: map[string]string{"junk.sh": "#!/bin/sh\necho '}}}{{{ not yaml'\n"}}),
			v1alpha1.ReasonLoadFailed, []string{"hooks/junk.sh: --config output", "neither YAML nor JSON"}},
		{"hook-hangs", packed(t, packagetest.Source{Name: "hook-hangs", Hooks: map[string]string{"hang.sh": "#!/bin/sh\nsleep 600 &\nsleep 600\n"}}),
			v1alpha1.ReasonLoadFailed, []string{"hooks/hang.sh: --config did not finish within 1s"}},
	}

	dir := t.TempDir()
	pkgs := []served{{name: "neighbour", data: packed(t, packagetest.Source{Name: "neighbour"})}}
	for _, tc := range cases {
		pkgs = append(pkgs, served{name: tc.name, data: tc.data})
	}
	repoName := strings.ToLower(ns) + "-repo"
	createRepo(t, repoName, "file://"+writeRepo(t, filepath.Join(dir, "repo"), pkgs...))
	// An entry without a digest spoils its repository's status; it gets
	// one of its own.
	noDigestRepo := strings.ToLower(ns) + "-nodigest"
	createRepo(t, noDigestRepo, "file://"+writeRepo(t, filepath.Join(dir, "nodigest"),
		served{name: "no-digest", data: packed(t, packagetest.Source{Name: "no-digest"}), noDigest: true}))

	createPackage(t, ns, "neighbour", repoName, "*")
	before := waitFor(t, ns, "neighbour", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })
	readySince := condition(before, v1alpha1.ConditionReady).LastTransitionTime

	for _, tc := range cases {
		createPackage(t, ns, tc.name, repoName, "*")
	}
	createPackage(t, ns, "no-digest", noDigestRepo, "*")
	cases = append(cases, struct {
		name   string
		data   []byte
		reason string
		want   []string
	}{"no-digest", nil, v1alpha1.ReasonVerifyFailed, []string{"no-digest 1.0.0", "index entry has no digest"}})

	t.Run("bad", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				gp := waitFor(t, ns, tc.name, "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
				c := condition(gp, v1alpha1.ConditionReady)
				if c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
					t.Errorf("Ready = %s %s, want False %s (message %q)", c.Status, c.Reason, tc.reason, c.Message)
				}
				for _, w := range tc.want {
					if !strings.Contains(c.Message, w) {
						t.Errorf("Ready message %q does not contain %q", c.Message, w)
					}
				}
				if gp.Status.Phase != v1alpha1.PhasePending {
					t.Errorf("phase %s, want %s: nothing of a bad package loads", gp.Status.Phase, v1alpha1.PhasePending)
				}
				waitWarning(t, ns, tc.name, tc.reason, tc.want)
			})
		}
	})

	var now v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "neighbour"}, &now); err != nil {
		t.Fatal(err)
	}
	c := condition(&now, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || !c.LastTransitionTime.Equal(&readySince) || now.Status.Phase != v1alpha1.PhaseRunning || !now.Status.Enabled {
		t.Errorf("neighbour after the bad packages: Ready %+v (Ready since %s), phase %s, enabled %v", c, readySince, now.Status.Phase, now.Status.Enabled)
	}
}

// waitWarning waits for a Warning Event on the GadgetPackage name with
// reason whose message holds every string of want.
func waitWarning(t *testing.T, ns, name, reason string, want []string) {
	t.Helper()
	env.WaitEvent(t, 30*time.Second, testenv.EventMatch{Namespace: ns, Kind: "GadgetPackage", Name: name, Type: corev1.EventTypeWarning, Reason: reason, Parts: want})
}

// TestIndexEntriesThatLieFailOnlyThemselves drives index entries that do
// not describe their archive, or that YAML reads differently from what
// they look like, through GadgetPackages against a repository served over
// HTTP: each ends Ready=False with its reason and a message naming the
// chart, the version and what is wrong, with a Warning Event; the
// repository lists them as malformed, and a good neighbour in the same
// repository stays Ready.
func TestIndexEntriesThatLieFailOnlyThemselves(t *testing.T) {
	startWith(t, setup{})
	ns := env.Namespace(t)
	dir := t.TempDir()
	archives := map[string][]byte{
		"neighbour-1.0.0.tgz":      packed(t, packagetest.Source{Name: "neighbour"}),
		"evil-renamed-1.0.0.tgz":   packed(t, packagetest.Source{Name: "evil-renamed"}),
		"version-lie-2.0.0.tgz":    packed(t, packagetest.Source{Name: "version-lie", Version: "2.0.0"}),
		"numeric-digest-1.0.0.tgz": packed(t, packagetest.Source{Name: "numeric-digest"}),
		"md5-digest-1.0.0.tgz":     packed(t, packagetest.Source{Name: "md5-digest"}),
	}
	for name, data := range archives {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	packagetest.WriteIndex(t, dir,
		packagetest.IndexEntry{Name: "neighbour"},
		packagetest.IndexEntry{Name: "evil-alias", URL: "evil-renamed-1.0.0.tgz"},
		packagetest.IndexEntry{Name: "version-lie", Version: "1.0.0", URL: "version-lie-2.0.0.tgz"},
		packagetest.IndexEntry{Name: "numeric-digest", Digest: strings.Repeat("0", 64)},
		packagetest.IndexEntry{Name: "md5-digest", Digest: "md5:d41d8cd98f00b204e9800998ecf8427e"},
		packagetest.IndexEntry{Name: "no-urls", URL: packagetest.Omit, Digest: strings.Repeat("a", 64)})
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	repoName := strings.ToLower(ns) + "-lies"
	createRepo(t, repoName, srv.URL)

	createPackage(t, ns, "neighbour", repoName, "*")
	before := waitFor(t, ns, "neighbour", "Ready", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionReady) })
	readySince := condition(before, v1alpha1.ConditionReady).LastTransitionTime

	cases := []struct {
		name   string
		reason string
		want   []string // in the Ready message and the Event
	}{
		{"evil-alias", v1alpha1.ReasonVerifyFailed, []string{"archive holds another chart", "the index lists evil-alias 1.0.0", `says name "evil-renamed"`}},
		{"version-lie", v1alpha1.ReasonVerifyFailed, []string{"archive holds another chart", "the index lists version-lie 1.0.0", `says version "2.0.0"`}},
		{"numeric-digest", v1alpha1.ReasonVerifyFailed, []string{"numeric-digest 1.0.0", "field digest is not a string", "YAML reads it as the integer 0"}},
		{"md5-digest", v1alpha1.ReasonVerifyFailed, []string{"md5-digest 1.0.0", `field digest "md5:d41d8cd98f00b204e9800998ecf8427e" is not sha256:<64 hex digits> or 64 hex digits`}},
		{"no-urls", v1alpha1.ReasonIndexFailed, []string{"no-urls 1.0.0", "field urls is missing or empty"}},
	}
	for _, tc := range cases {
		createPackage(t, ns, tc.name, repoName, "*")
	}
	t.Run("bad", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				gp := waitFor(t, ns, tc.name, "Stalled", func(gp *v1alpha1.GadgetPackage) bool { return isTrue(gp, v1alpha1.ConditionStalled) })
				c := condition(gp, v1alpha1.ConditionReady)
				if c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
					t.Errorf("Ready = %s %s, want False %s (message %q)", c.Status, c.Reason, tc.reason, c.Message)
				}
				for _, w := range tc.want {
					if !strings.Contains(c.Message, w) {
						t.Errorf("Ready message %q does not contain %q", c.Message, w)
					}
				}
				if gp.Status.Phase != v1alpha1.PhasePending {
					t.Errorf("phase %s, want %s: nothing of a refused package loads", gp.Status.Phase, v1alpha1.PhasePending)
				}
				waitWarning(t, ns, tc.name, tc.reason, tc.want)
			})
		}
	})

	eventually.NoError(t, 30*time.Second, fmt.Sprintf("PackageRepository %s Ready True listing the 3 malformed entries", repoName), func() error {
		var pr v1alpha1.PackageRepository
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: repoName}, &pr); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(pr.Status.Conditions, v1alpha1.ConditionReady)
		if c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "3 version(s) cannot be installed because their index entries are malformed") {
			return nil
		}
		return fmt.Errorf("Ready = %+v", c)
	})
	var now v1alpha1.GadgetPackage
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "neighbour"}, &now); err != nil {
		t.Fatal(err)
	}
	c := condition(&now, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || !c.LastTransitionTime.Equal(&readySince) || now.Status.Phase != v1alpha1.PhaseRunning {
		t.Errorf("neighbour after the bad entries: Ready %+v (Ready since %s), phase %s", c, readySince, now.Status.Phase)
	}
}
