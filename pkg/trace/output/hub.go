package output

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
)

// Defaults of HubOptions.
const (
	// DefaultHubClientBuffer is the default HubOptions.ClientBuffer: 1024
	// events.
	DefaultHubClientBuffer = 1024
	// DefaultHubWriteTimeout is the default HubOptions.WriteTimeout: 10s.
	DefaultHubWriteTimeout = 10 * time.Second
	// DefaultHubMaxClientsPerTrace is the default
	// HubOptions.MaxClientsPerTrace: 4 clients.
	DefaultHubMaxClientsPerTrace = 4
	// DefaultHubMaxClients is the default HubOptions.MaxClients: 64
	// clients.
	DefaultHubMaxClients = 64
	// hubBacklogBytes bounds each run's backlog in bytes.
	hubBacklogBytes = 1 << 20
)

// HubOptions configures a Hub.
type HubOptions struct {
	// ClientBuffer is how many events wait for each client before newer
	// ones are dropped for it, and how many recent events each run keeps
	// for clients that connect later (at most 1 MiB of them). 0 (or less)
	// means DefaultHubClientBuffer.
	ClientBuffer int
	// WriteTimeout bounds each write to a client; a client that reads
	// nothing for that long is disconnected. 0 (or less) means
	// DefaultHubWriteTimeout.
	WriteTimeout time.Duration
	// MaxClientsPerTrace caps the clients one Trace's stream serves at
	// once (the node role's --stream-max-clients-per-trace); one more
	// gets 429 Too Many Requests. 0 (or less) means
	// DefaultHubMaxClientsPerTrace.
	MaxClientsPerTrace int
	// MaxClients caps the clients the Hub serves at once, every Trace
	// together (--stream-max-clients); one more gets 429. 0 (or less)
	// means DefaultHubMaxClients.
	MaxClients int
	// Logger records refused clients; default discards.
	Logger logr.Logger
}

// Hub serves live events of Stream-mode Traces over HTTP.
//
// GET <prefix><namespace>/<name> answers with the run's recent events (up
// to ClientBuffer) and then streams its live events as JSON lines
// (application/x-ndjson), flushed per batch, until the client leaves, the
// run's sink is closed or the Hub stops. With ?follow=false it answers the
// recent events and ends. When the Trace has no active run it answers 404
// with a message naming the Trace. A client over MaxClientsPerTrace or
// MaxClients gets 429 with a message naming the cap and its flag, and
// the clients already served go on.
//
// A slow client never blocks Write: each client has a buffer of
// ClientBuffer events and events that do not fit are dropped for that
// client and counted in the sink's Stats.Dropped (once per client that
// missed them).
//
// Open, Handler and Stop are safe for concurrent use. Stop ends every
// stream and waits for the handlers serving them to return.
type Hub struct {
	opts HubOptions

	mu sync.Mutex
	// runs holds the active run of each Trace; guarded by mu.
	runs map[types.NamespacedName]*hubRun
	// prefix is the first prefix given to Handler, for Close's reference;
	// guarded by mu.
	prefix string
	// clients counts the clients being served, per Trace in perTrace
	// (no entry for 0); guarded by mu.
	clients  int
	perTrace map[types.NamespacedName]int
	// stopped is set by Stop; no handler registers after it. Guarded by
	// mu.
	stopped bool
	// stop is closed by Stop.
	stop chan struct{}
	// handlers counts handlers serving a stream; Add only under mu while
	// !stopped.
	handlers sync.WaitGroup
}

// NewHub returns a Hub with opts' defaults applied. It starts nothing.
func NewHub(opts HubOptions) *Hub {
	if opts.ClientBuffer <= 0 {
		opts.ClientBuffer = DefaultHubClientBuffer
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultHubWriteTimeout
	}
	if opts.MaxClientsPerTrace <= 0 {
		opts.MaxClientsPerTrace = DefaultHubMaxClientsPerTrace
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultHubMaxClients
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	return &Hub{
		opts:     opts,
		runs:     make(map[types.NamespacedName]*hubRun),
		perTrace: make(map[types.NamespacedName]int),
		stop:     make(chan struct{}),
	}
}

// Open starts a run for key and returns its Sink; Close of that sink ends
// every client stream of it. A run still open for key is ended first (its
// streams end, its sink keeps counting but reaches no client). After Stop
// the sink counts events and reaches no client.
func (h *Hub) Open(key types.NamespacedName) Sink {
	r := &hubRun{
		hub:     h,
		key:     key,
		backlog: newWindow(hubBacklogBytes, h.opts.ClientBuffer, '\n'),
		clients: make(map[*hubClient]struct{}),
		done:    make(chan struct{}),
	}
	h.mu.Lock()
	old := h.runs[key]
	if !h.stopped {
		h.runs[key] = r
	}
	h.mu.Unlock()
	if old != nil {
		old.end()
	}
	return &hubSink{run: r}
}

// Stop ends every stream, refuses new ones (503) and waits for the
// handlers that served streams to return; a handler blocked writing to a
// client that reads nothing returns within WriteTimeout. Sinks stay usable.
// Later calls do nothing but wait.
func (h *Hub) Stop() {
	h.mu.Lock()
	if !h.stopped {
		h.stopped = true
		close(h.stop)
	}
	runs := h.runs
	h.runs = make(map[types.NamespacedName]*hubRun)
	h.mu.Unlock()
	for _, r := range runs {
		r.end()
	}
	h.handlers.Wait()
}

// Handler serves GET <prefix><namespace>/<name>; prefix is like
// "/traces/" (a missing final "/" is added). Mount it on a mux under the
// same prefix.
func (h *Hub) Handler(prefix string) http.Handler {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	h.mu.Lock()
	if h.prefix == "" {
		h.prefix = prefix
	}
	h.mu.Unlock()
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.serve(w, req, prefix)
	})
}

// StreamKey returns the Trace a stream's path <prefix><namespace>/<name>
// names; false when path is not one.
func StreamKey(path, prefix string) (types.NamespacedName, bool) {
	rest, ok := strings.CutPrefix(path, prefix)
	ns, name, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: ns, Name: name}, true
}

func (h *Hub) serve(w http.ResponseWriter, req *http.Request, prefix string) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method "+req.Method+" not allowed: use GET", http.StatusMethodNotAllowed)
		return
	}
	key, ok := StreamKey(req.URL.Path, prefix)
	if !ok {
		http.Error(w, fmt.Sprintf("path %q: expected %s<namespace>/<trace name>", req.URL.Path, prefix), http.StatusNotFound)
		return
	}
	follow := true
	if v := req.URL.Query().Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			http.Error(w, fmt.Sprintf("query follow=%q: expected true or false", v), http.StatusBadRequest)
			return
		}
		follow = b
	}

	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		http.Error(w, "trace streams are shutting down", http.StatusServiceUnavailable)
		return
	}
	r := h.runs[key]
	if r == nil {
		h.mu.Unlock()
		http.Error(w, fmt.Sprintf("trace %s has no active run on this node: a Stream-mode Trace streams only while it runs (start it with the annotation gadget.kinvolk.io/operation=start)", key), http.StatusNotFound)
		return
	}
	if refusal := h.overCap(key); refusal != "" {
		h.mu.Unlock()
		h.opts.Logger.Info("refused a stream client", "trace", key, "remote", req.RemoteAddr, "reason", refusal)
		w.Header().Set("Retry-After", "10")
		http.Error(w, refusal, http.StatusTooManyRequests)
		return
	}
	h.clients++
	h.perTrace[key]++
	h.handlers.Add(1)
	h.mu.Unlock()
	defer h.handlers.Done()
	defer h.release(key)

	var c *hubClient
	if follow {
		c = &hubClient{events: make(chan []byte, h.opts.ClientBuffer)}
	}
	backlog, ok := r.attach(c)
	if c != nil {
		defer r.detach(c)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/x-ndjson")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	if !h.send(w, rc, backlog) || c == nil || !ok {
		return
	}
	h.stream(req.Context(), w, rc, r, c)
}

// overCap says why one more client of key is refused, or "" when it is
// not; call with mu held.
func (h *Hub) overCap(key types.NamespacedName) string {
	if n := h.perTrace[key]; n >= h.opts.MaxClientsPerTrace {
		return fmt.Sprintf("trace %s already has %d stream clients, the cap per Trace (--stream-max-clients-per-trace=%d): retry when one disconnects", key, n, h.opts.MaxClientsPerTrace)
	}
	if h.clients >= h.opts.MaxClients {
		return fmt.Sprintf("this node already serves %d stream clients, the cap per process (--stream-max-clients=%d): retry when one disconnects", h.clients, h.opts.MaxClients)
	}
	return ""
}

// release forgets one client of key.
func (h *Hub) release(key types.NamespacedName) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients--
	if h.perTrace[key]--; h.perTrace[key] <= 0 {
		delete(h.perTrace, key)
	}
}

// stream writes c's events in batches until the run ends, the hub stops or
// the client leaves.
func (h *Hub) stream(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, r *hubRun, c *hubClient) {
	var batch []byte
	for {
		select {
		case ev := <-c.events:
			batch = appendLine(batch[:0], ev)
			batch = drain(batch, c.events)
			if !h.send(w, rc, batch) {
				return
			}
		case <-r.done:
			// write sends only while the run is not ended, under the
			// run's lock that end takes: nothing more arrives.
			h.send(w, rc, drain(batch[:0], c.events))
			return
		case <-h.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// drain appends every event waiting in ch, one per line.
func drain(batch []byte, ch chan []byte) []byte {
	for {
		select {
		case ev := <-ch:
			batch = appendLine(batch, ev)
		default:
			return batch
		}
	}
}

func appendLine(dst, ev []byte) []byte { return append(append(dst, ev...), '\n') }

// send writes b and flushes within WriteTimeout; it reports success.
func (h *Hub) send(w http.ResponseWriter, rc *http.ResponseController, b []byte) bool {
	if len(b) > 0 {
		// Not every ResponseWriter supports deadlines (httptest's
		// recorder does not); without one the write is unbounded.
		_ = rc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
	}
	return rc.Flush() == nil
}

// hubRun is one run of a Stream-mode Trace.
type hubRun struct {
	hub *Hub
	key types.NamespacedName

	mu sync.Mutex
	// backlog keeps the recent events, each followed by '\n'; guarded by
	// mu.
	backlog window
	// clients are the following clients; guarded by mu.
	clients map[*hubClient]struct{}
	// ended is set by end; guarded by mu.
	ended bool

	// done is closed by end.
	done chan struct{}

	events  atomic.Int64
	dropped atomic.Int64
}

// hubClient is one following client.
type hubClient struct {
	events chan []byte
}

// attach registers c (nil for a non-following client) and returns a copy
// of the backlog, atomically with respect to write, and whether the run is
// still active.
func (r *hubRun) attach(c *hubClient) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	backlog := append([]byte(nil), r.backlog.live()...)
	if c != nil && !r.ended {
		r.clients[c] = struct{}{}
	}
	return backlog, !r.ended
}

func (r *hubRun) detach(c *hubClient) {
	r.mu.Lock()
	delete(r.clients, c)
	r.mu.Unlock()
}

// write hands a copy of b to the backlog and every client with room.
func (r *hubRun) write(b []byte) {
	r.events.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.backlog.add(b)
	if len(r.clients) == 0 {
		return
	}
	ev := append([]byte(nil), b...) // shared read-only by the clients
	for c := range r.clients {
		select {
		case c.events <- ev:
		default:
			r.dropped.Add(1)
		}
	}
}

// end ends the run's streams; later calls do nothing.
func (r *hubRun) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ended {
		r.ended = true
		close(r.done)
	}
}

// hubSink is the Sink of one hub run.
type hubSink struct {
	run *hubRun

	closeOnce sync.Once
	closed    atomic.Bool
	ref       string
}

func (s *hubSink) Write(b []byte) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.run.write(b)
	return nil
}

// Close ends the run's streams (each client gets what was already queued
// for it) and returns the stream's path: the prefix of the Hub's first
// Handler call, then "<namespace>/<name>".
func (s *hubSink) Close(ctx context.Context) (string, error) {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		r, h := s.run, s.run.hub
		r.end()
		h.mu.Lock()
		if h.runs[r.key] == r {
			delete(h.runs, r.key)
		}
		s.ref = h.prefix + r.key.Namespace + "/" + r.key.Name
		h.mu.Unlock()
	})
	return s.ref, nil
}

func (s *hubSink) Stats() Stats {
	return Stats{Events: s.run.events.Load(), Dropped: s.run.dropped.Load()}
}
