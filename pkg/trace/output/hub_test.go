package output

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// hubServer serves h under /traces/ and counts the handlers running.
type hubServer struct {
	*httptest.Server
	running atomic.Int64
}

func newHubServer(t *testing.T, h *Hub) *hubServer {
	t.Helper()
	s := &hubServer{}
	handler := h.Handler("/traces/")
	mux := http.NewServeMux()
	mux.Handle("/traces/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.running.Add(1)
		defer s.running.Add(-1)
		handler.ServeHTTP(w, r)
	}))
	s.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		h.Stop()
		s.Close()
	})
	return s
}

// get starts a request; it returns once the response headers arrived,
// which for a stream means the client is attached.
func get(t *testing.T, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readBody reads body lines until EOF.
func readBody(body io.Reader) ([]string, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

func wantLines(t *testing.T, who string, got []string, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("%s got %d lines, want events %d to %d", who, len(got), from, to-1)
	}
	for i, l := range got {
		if l != string(event(from+i, 60)) {
			t.Fatalf("%s line %d = %q, want event %d", who, i, l, from+i)
		}
	}
}

var traceKey = types.NamespacedName{Namespace: "gadget", Name: "mytrace"}

func TestHubTwoClientsGetEveryEvent(t *testing.T) {
	h := NewHub(HubOptions{})
	srv := newHubServer(t, h)
	sink := h.Open(traceKey)
	url := srv.URL + "/traces/gadget/mytrace"

	var wg sync.WaitGroup
	results := make([][]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		resp := get(t, url)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("client %d: %s, Content-Type %q", i, resp.Status, resp.Header.Get("Content-Type"))
		}
		wg.Go(func() { results[i], errs[i] = readBody(resp.Body) })
	}
	const n = 500
	buf := make([]byte, 0, 64)
	for i := range n {
		buf = append(buf[:0], event(i, 60)...)
		if err := sink.Write(buf); err != nil {
			t.Fatal(err)
		}
		buf[3] = '!' // the caller reuses its slice
	}
	ref, err := sink.Close(context.Background())
	if err != nil || ref != "/traces/gadget/mytrace" {
		t.Fatalf("Close() = %q, %v; want /traces/gadget/mytrace, nil", ref, err)
	}
	wg.Wait() // the streams end with the run
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		wantLines(t, "client", results[i], 0, n)
	}
	if st := sink.Stats(); st != (Stats{Events: n}) {
		t.Fatalf("Stats() = %+v, want %d events, none dropped", st, n)
	}
	if err := sink.Write(buf); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	// The run is over: 404.
	if resp := get(t, url); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after Close: %s, want 404", resp.Status)
	}
}

func TestHubBacklogThenLive(t *testing.T) {
	h := NewHub(HubOptions{ClientBuffer: 4})
	srv := newHubServer(t, h)
	sink := h.Open(traceKey)
	for i := range 10 {
		if err := sink.Write(event(i, 60)); err != nil {
			t.Fatal(err)
		}
	}
	url := srv.URL + "/traces/gadget/mytrace"

	// follow=false: the last ClientBuffer events, then the end.
	lines, err := readBody(get(t, url+"?follow=false").Body)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, "follow=false", lines, 6, 10)

	// Following: the same backlog, then live events until Close.
	resp := get(t, url)
	done := make(chan struct{})
	var got []string
	go func() {
		defer close(done)
		got, err = readBody(resp.Body)
	}()
	for i := 10; i < 13; i++ {
		if err := sink.Write(event(i, 60)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, "follower", got, 6, 13)
}

func TestHubErrors(t *testing.T) {
	h := NewHub(HubOptions{})
	srv := newHubServer(t, h)
	h.Open(traceKey)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		status int
		body   string
	}{
		{"unknown trace", http.MethodGet, "/traces/gadget/nope", http.StatusNotFound, "trace gadget/nope has no active run"},
		{"other namespace", http.MethodGet, "/traces/default/mytrace", http.StatusNotFound, "trace default/mytrace has no active run"},
		{"no name", http.MethodGet, "/traces/gadget", http.StatusNotFound, "expected /traces/<namespace>/<trace name>"},
		{"too deep", http.MethodGet, "/traces/gadget/mytrace/x", http.StatusNotFound, "expected /traces/<namespace>/<trace name>"},
		{"bad follow", http.MethodGet, "/traces/gadget/mytrace?follow=maybe", http.StatusBadRequest, `follow="maybe"`},
		{"post", http.MethodPost, "/traces/gadget/mytrace", http.StatusMethodNotAllowed, "use GET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testContext(t), tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Fatalf("%s %s: %s %q; want %d with %q", tc.method, tc.path, resp.Status, body, tc.status, tc.body)
			}
		})
	}
}

// TestHubClientDropsWhenFull checks the bookkeeping: a client whose buffer
// is full loses the newer events, counted once each.
func TestHubClientDropsWhenFull(t *testing.T) {
	h := NewHub(HubOptions{ClientBuffer: 4})
	sink := h.Open(traceKey).(*hubSink)
	c := &hubClient{events: make(chan []byte, 4)}
	if _, active := sink.run.attach(c); !active {
		t.Fatal("new run not active")
	}
	for i := range 10 {
		if err := sink.Write(event(i, 60)); err != nil {
			t.Fatal(err)
		}
	}
	if st := sink.Stats(); st != (Stats{Events: 10, Dropped: 6}) {
		t.Fatalf("Stats() = %+v, want 10 events, 6 dropped", st)
	}
	for i := range 4 {
		if got := <-c.events; string(got) != string(event(i, 60)) {
			t.Fatalf("queued event %d = %q", i, got)
		}
	}
}

// countLines counts body lines until EOF.
func countLines(body io.Reader, n *int) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		*n++
	}
	return sc.Err()
}

// TestHubSlowClientDoesNotBlock keeps a client that reads nothing while
// 32 MiB of events flow, more than the connection's buffers hold: Write
// never waits for it, what it misses is counted, and a reading client
// beside it keeps receiving. Every event is either delivered or counted as
// dropped, for each client.
func TestHubSlowClientDoesNotBlock(t *testing.T) {
	h := NewHub(HubOptions{ClientBuffer: 16})
	srv := newHubServer(t, h)
	sink := h.Open(traceKey)
	url := srv.URL + "/traces/gadget/mytrace"

	slow := get(t, url) // read only after the run
	fast := get(t, url)
	var fastLines int
	fastDone := make(chan error, 1)
	go func() { fastDone <- countLines(fast.Body, &fastLines) }()

	big := event(0, 16<<10)
	const n = 2048
	for range n {
		if err := sink.Write(big); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var slowLines int
	if err := countLines(slow.Body, &slowLines); err != nil {
		t.Fatalf("slow client: %v", err)
	}
	if err := <-fastDone; err != nil {
		t.Fatalf("reading client: %v", err)
	}
	st := sink.Stats()
	if st.Events != n {
		t.Fatalf("Stats().Events = %d, want %d", st.Events, n)
	}
	if slowLines >= n {
		t.Fatalf("a client that read nothing during the run got all %d events of %d bytes", n, len(big))
	}
	if fastLines == 0 {
		t.Fatal("the reading client received nothing")
	}
	if want := int64(2*n - slowLines - fastLines); st.Dropped != want {
		t.Fatalf("Stats().Dropped = %d; clients got %d and %d of %d events, so want %d", st.Dropped, slowLines, fastLines, n, want)
	}
	h.Stop() // returns once every handler has
	if n := srv.running.Load(); n != 0 {
		t.Fatalf("%d handlers still running after Stop", n)
	}
	t.Logf("%d events: slow client got %d, reading client %d, %d dropped", n, slowLines, fastLines, st.Dropped)
}

func TestHubStopEndsStreams(t *testing.T) {
	h := NewHub(HubOptions{})
	srv := newHubServer(t, h)
	other := types.NamespacedName{Namespace: "gadget", Name: "other"}
	s1, s2 := h.Open(traceKey), h.Open(other)

	var wg sync.WaitGroup
	for _, path := range []string{"/traces/gadget/mytrace", "/traces/gadget/mytrace", "/traces/gadget/other"} {
		resp := get(t, srv.URL+path)
		wg.Go(func() { _, _ = io.Copy(io.Discard, resp.Body) })
	}
	if err := s1.Write([]byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if n := srv.running.Load(); n != 3 {
		t.Fatalf("%d handlers running, want 3", n)
	}
	h.Stop()
	if n := srv.running.Load(); n != 0 {
		t.Fatalf("%d handlers still running after Stop", n)
	}
	wg.Wait() // every stream ended
	h.Stop()  // again: nothing to do

	if resp := get(t, srv.URL+"/traces/gadget/other"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Stop: %s, want 503", resp.Status)
	}
	// The sinks stay usable for the controller.
	for _, s := range []Sink{s1, s2} {
		if err := s.Write([]byte(`{"a":2}`)); err != nil {
			t.Fatalf("Write after Stop: %v", err)
		}
		if _, err := s.Close(context.Background()); err != nil {
			t.Fatalf("Close after Stop: %v", err)
		}
	}
	if st := s1.Stats(); st.Events != 2 {
		t.Fatalf("Stats() = %+v, want 2 events", st)
	}
}

func TestHubOpenAgainEndsOldRun(t *testing.T) {
	h := NewHub(HubOptions{})
	srv := newHubServer(t, h)
	old := h.Open(traceKey)
	resp := get(t, srv.URL+"/traces/gadget/mytrace")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	cur := h.Open(traceKey)
	<-done // the old run's stream ended
	// Closing the old sink late does not end the new run.
	if _, err := old.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := cur.Write(event(0, 60)); err != nil {
		t.Fatal(err)
	}
	lines, err := readBody(get(t, srv.URL+"/traces/gadget/mytrace?follow=false").Body)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, "new run", lines, 0, 1)
}

// TestHubClientCaps fills the per-Trace and the per-process cap: one
// client more gets 429 naming the cap and its flag, the clients already
// attached keep receiving every event, and a place freed by a client
// that leaves is taken again.
func TestHubClientCaps(t *testing.T) {
	h := NewHub(HubOptions{MaxClientsPerTrace: 2, MaxClients: 3})
	srv := newHubServer(t, h)
	other := types.NamespacedName{Namespace: "gadget", Name: "other"}
	sinkA, sinkB := h.Open(traceKey), h.Open(other)
	urlA, urlB := srv.URL+"/traces/gadget/mytrace", srv.URL+"/traces/gadget/other"

	a1, a2 := get(t, urlA), get(t, urlA)
	refused := func(url, want string) {
		t.Helper()
		resp := get(t, url)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s over the cap: %s %q; want 429 naming %q", url, resp.Status, body, want)
		}
	}
	refused(urlA, "the cap per Trace (--stream-max-clients-per-trace=2)")
	b1 := get(t, urlB)
	refused(urlB, "the cap per process (--stream-max-clients=3)")
	for i, resp := range []*http.Response{a1, a2, b1} {
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("client %d: %s", i, resp.Status)
		}
	}

	// The attached clients keep streaming.
	const n = 20
	for i := range n {
		if err := sinkA.Write(event(i, 60)); err != nil {
			t.Fatal(err)
		}
		if err := sinkB.Write(event(i, 60)); err != nil {
			t.Fatal(err)
		}
	}
	for i, resp := range []*http.Response{a1, a2, b1} {
		sc := bufio.NewScanner(resp.Body)
		for j := range n {
			if !sc.Scan() || sc.Text() != string(event(j, 60)) {
				t.Fatalf("client %d, line %d: %q, %v; want event %d", i, j, sc.Text(), sc.Err(), j)
			}
		}
	}

	// A client leaves: its place is free again.
	a1.Body.Close()
	eventually.True(t, 10*time.Second, "a place on trace gadget/mytrace once a client left", func() bool {
		resp := get(t, urlA)
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
