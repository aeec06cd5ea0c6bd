package streamserver_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver"
	"github.com/gadgetpm/gadgetpm/pkg/streamserver/streamservertest"
	"github.com/gadgetpm/gadgetpm/pkg/trace/output"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// reviewCounter is the administrator's config with every TokenReview
// and SubjectAccessReview counted.
type reviewCounter struct{ tokens, access atomic.Int64 }

func (rc *reviewCounter) config() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/tokenreviews"):
				rc.tokens.Add(1)
			case strings.HasSuffix(r.URL.Path, "/subjectaccessreviews"):
				rc.access.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func event(i int) string { return fmt.Sprintf(`{"seq":%d,"comm":"sh"}`, i) }

// TestTenantsStreams runs two tenants in two namespaces against one
// node's streams: tenant A's service account reads A's stream over TLS;
// tenant B's, allowed to get traces in B only, is refused A's stream with
// 403; no token and a bad token get 401; every refusal says what is
// missing, in the body and in the log.
func TestTenantsStreams(t *testing.T) {
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	tokenA := streamservertest.Reader(t, env.Config, nsA, "reader")
	tokenB := streamservertest.Reader(t, env.Config, nsB, "reader")
	hub := output.NewHub(output.HubOptions{})
	t.Cleanup(hub.Stop)
	sinkA := hub.Open(types.NamespacedName{Namespace: nsA, Name: "execs"})
	hub.Open(types.NamespacedName{Namespace: nsB, Name: "execs"})
	logs := &testlog.Lines{}
	base, c := streamservertest.Serve(t, env.Config, hub.Handler("/traces/"), streamserver.Options{Logger: logs.Logger(0)})
	urlA, urlB := base+"/traces/"+nsA+"/execs", base+"/traces/"+nsB+"/execs"

	for _, tc := range []struct {
		name, url, token string
		status           int
		body             []string
	}{
		{"no token", urlA, "", http.StatusUnauthorized, []string{"no bearer token", "Authorization: Bearer"}},
		{"bad token", urlA, "not-a-token", http.StatusUnauthorized, []string{"the API server rejected the bearer token"}},
		{"B reads A", urlA, tokenB, http.StatusForbidden, []string{
			`user "system:serviceaccount:` + nsB + `:reader" may not get traces.gadget.kinvolk.io "execs" in namespace "` + nsA + `"`,
			"ClusterRole gadgetpm-trace-viewer"}},
		{"A reads A's other trace (no run)", base + "/traces/" + nsA + "/other", tokenA, http.StatusNotFound, []string{"has no active run"}},
		{"B reads B", urlB + "?follow=false", tokenB, http.StatusOK, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := streamservertest.Get(testContext(t), c, tc.url, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				// a stream's body would not end: no body here
				t.Fatalf("GET %s: %s, want %d", tc.url, resp.Status, tc.status)
			}
			body, _ := io.ReadAll(resp.Body)
			for _, want := range tc.body {
				if !strings.Contains(string(body), want) {
					t.Errorf("body %q lacks %q", body, want)
				}
			}
			if n := strings.Count(strings.TrimSpace(string(body)), "\n"); tc.status >= 400 && n != 0 {
				t.Errorf("body %q: want one line", body)
			}
			if resp.TLS == nil {
				t.Error("served without TLS")
			}
		})
	}
	for _, want := range []string{"no bearer token", "may not get traces", "system:serviceaccount:" + nsB + ":reader"} {
		if logs.Count(want) == 0 {
			t.Errorf("the log lacks %q:\n%s", want, strings.Join(logs.Get(), "\n"))
		}
	}

	// A reads its stream live.
	resp, err := streamservertest.Get(testContext(t), c, urlA, tokenA)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("A reads its stream: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	for i := range 3 {
		if err := sinkA.Write([]byte(event(i))); err != nil {
			t.Fatal(err)
		}
	}
	sc := bufio.NewScanner(resp.Body)
	for i := range 3 {
		if !sc.Scan() || sc.Text() != event(i) {
			t.Fatalf("line %d: %q, %v; want %s", i, sc.Text(), sc.Err(), event(i))
		}
	}
}

// TestCapsOverTLS: with a cap of two clients per Trace, a third
// authorized reader gets 429 naming the cap and its flag, while the two
// first keep streaming.
func TestCapsOverTLS(t *testing.T) {
	ns := env.Namespace(t)
	token := streamservertest.Reader(t, env.Config, ns, "reader")
	hub := output.NewHub(output.HubOptions{MaxClientsPerTrace: 2})
	t.Cleanup(hub.Stop)
	sink := hub.Open(types.NamespacedName{Namespace: ns, Name: "execs"})
	base, c := streamservertest.Serve(t, env.Config, hub.Handler("/traces/"), streamserver.Options{})
	url := base + "/traces/" + ns + "/execs"
	var streams []*bufio.Scanner
	for range 2 {
		resp, err := streamservertest.Get(testContext(t), c, url, token)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", url, resp.Status)
		}
		streams = append(streams, bufio.NewScanner(resp.Body))
	}
	resp, err := streamservertest.Get(testContext(t), c, url, token)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "the cap per Trace (--stream-max-clients-per-trace=2)"; resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), want) {
		t.Fatalf("third reader: %s %q; want 429 naming %q", resp.Status, body, want)
	}
	if err := sink.Write([]byte(event(7))); err != nil {
		t.Fatal(err)
	}
	for i, sc := range streams {
		if !sc.Scan() || sc.Text() != event(7) {
			t.Fatalf("reader %d after the refusal: %q, %v", i, sc.Text(), sc.Err())
		}
	}
}

// TestDecisionsAreCached: a reader that reconnects is not reviewed
// again while the decisions last, an allowed and a denied one alike.
func TestDecisionsAreCached(t *testing.T) {
	ns, other := env.Namespace(t), env.Namespace(t)
	token := streamservertest.Reader(t, env.Config, ns, "reader")
	hub := output.NewHub(output.HubOptions{})
	t.Cleanup(hub.Stop)
	hub.Open(types.NamespacedName{Namespace: ns, Name: "execs"})
	var rc reviewCounter
	base, c := streamservertest.Serve(t, rc.config(), hub.Handler("/traces/"), streamserver.Options{})
	for _, tc := range []struct {
		path   string
		status int
	}{{"/traces/" + ns + "/execs?follow=false", http.StatusOK}, {"/traces/" + other + "/execs", http.StatusForbidden}} {
		for range 3 {
			resp, err := streamservertest.Get(testContext(t), c, base+tc.path, token)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("GET %s: %s, want %d", tc.path, resp.Status, tc.status)
			}
		}
	}
	if n, m := rc.tokens.Load(), rc.access.Load(); n != 1 || m != 2 {
		t.Fatalf("6 requests with one token on two Traces caused %d TokenReviews and %d SubjectAccessReviews, want 1 and 2", n, m)
	}
}

// TestSelfSignedCertificate: without a certificate directory the server
// generates one and still serves only TLS.
func TestSelfSignedCertificate(t *testing.T) {
	hub := output.NewHub(output.HubOptions{})
	t.Cleanup(hub.Stop)
	srv, err := streamserver.New(env.Config, hub.Handler("/traces/"), streamserver.Options{BindAddress: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := streamservertest.Start(t, srv)
	// plain HTTP is not served
	if resp, err := http.Get("http://" + addr + "/traces/a/b"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP: %s %q, want the TLS server's 400", resp.Status, body)
		}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the certificate is self-signed by design
	defer c.CloseIdleConnections()
	resp, err := streamservertest.Get(testContext(t), c, "https://"+addr+"/traces/a/b", "")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("GET over TLS without a token: %s, TLS %v", resp.Status, resp.TLS != nil)
	}
}

// TestCertDirMissing: a certificate directory without the files fails
// New, naming the flag and the files expected.
func TestCertDirMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := streamserver.New(env.Config, http.NotFoundHandler(), streamserver.Options{CertDir: dir})
	if err == nil || !strings.Contains(err.Error(), "--stream-cert-dir "+dir) || !strings.Contains(err.Error(), "tls.crt and tls.key") {
		t.Fatalf("New with an empty cert dir: %v", err)
	}
}
