package packagetest

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	helmregistry "helm.sh/helm/v3/pkg/registry"
)

// IndexEntry is one entry of a hand-written index.yaml. Version, URL and
// Digest are written as raw YAML text, so a test can write what a careless
// author would: an unquoted number, a field left out.
type IndexEntry struct {
	// Name is the entry's key and its name field. Required.
	Name string
	// Version is the raw version text; "" means 1.0.0.
	Version string
	// URL is the archive, relative to the index; "" means
	// <Name>-1.0.0.tgz; Omit leaves urls out.
	URL string
	// Digest is the raw digest text; "" means the sha256 of the file at
	// URL in the index's directory; Omit leaves digest out.
	Digest string
}

// WriteIndex writes dir/index.yaml listing entries (grouped by name, in
// order) and returns dir.
func WriteIndex(t testing.TB, dir string, entries ...IndexEntry) string {
	t.Helper()
	var names []string
	byName := map[string][]IndexEntry{}
	for _, e := range entries {
		if _, ok := byName[e.Name]; !ok {
			names = append(names, e.Name)
		}
		byName[e.Name] = append(byName[e.Name], e)
	}
	var b strings.Builder
	b.WriteString("apiVersion: v1\nentries:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %s:\n", n)
		for _, e := range byName[n] {
			fmt.Fprintf(&b, "  - apiVersion: v2\n    name: %s\n    version: %s\n    created: \"2026-01-02T03:04:05Z\"\n", e.Name, or(e.Version, "1.0.0"))
			url := or(e.URL, e.Name+"-1.0.0.tgz")
			if url != Omit {
				fmt.Fprintf(&b, "    urls:\n    - %s\n", url)
			}
			switch e.Digest {
			case Omit:
			case "":
				data, err := os.ReadFile(filepath.Join(dir, url))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				fmt.Fprintf(&b, "    digest: %s\n", hex.EncodeToString(sum[:]))
			default:
				fmt.Fprintf(&b, "    digest: %s\n", e.Digest)
			}
		}
	}
	b.WriteString("generated: \"2026-01-02T03:04:05Z\"\n")
	writeFile(t, filepath.Join(dir, "index.yaml"), []byte(b.String()), 0o644)
	return dir
}

// PushOCIAs pushes the archive at path to ref ("host/path/name:tag") of a
// registry OCIRegistry started, without Helm's check that ref's last path
// element and tag match the chart's name and version: a registry holds
// whatever a client pushes, so a puller must check them.
func PushOCIAs(t testing.TB, ref, path string) {
	t.Helper()
	pushAs(t, ref, path, helmregistry.ClientOptPlainHTTP())
}

// PushOCIAsTLS is PushOCIAs to a registry OCIRegistryTLS started, whose
// certificate is caPEM.
func PushOCIAsTLS(t testing.TB, ref, path string, caPEM []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("push: caPEM holds no certificate")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	pushAs(t, ref, path, helmregistry.ClientOptHTTPClient(&http.Client{Transport: tr}))
}

func pushAs(t testing.TB, ref, path string, transport helmregistry.ClientOption) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	client, err := helmregistry.NewClient(
		helmregistry.ClientOptBasicAuth(OCIUsername, OCIPassword),
		transport,
		helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "config.json")),
	)
	if err != nil {
		t.Fatal(err)
	}
	var pushErr error
	for try := 0; try < 50; try++ { // a registry may start in the background
		if _, pushErr = client.Push(data, ref, helmregistry.PushOptStrictMode(false)); pushErr == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("push %s as %s: %v", path, ref, pushErr)
}
