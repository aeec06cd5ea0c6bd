package debugserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"

	"github.com/gadgetpm/gadgetpm/pkg/dump"
)

// Source is what the debug server reads; the coordinator implements it.
// Every method must be safe for concurrent use and return copies the
// caller may keep.
type Source interface {
	// Dump is the whole state.
	Dump() Dump
	// Package is one package by key ("<namespace>.<name>"); false when no
	// package has that key.
	Package(key string) (PackageDump, bool)
	// HookSnapshots are the current objects of one hook's kubernetes
	// bindings; false when the package or the hook is unknown.
	HookSnapshots(key, hook string) (dump.Snapshots, bool)
}

// Options configure New.
type Options struct {
	// Path of the unix socket. Default DefaultSocket. Its directory is
	// created (mode 0700) when missing.
	Path string
	// Source answers the requests. Required.
	Source Source
	// ShutdownGrace bounds how long requests in flight may take once the
	// server is told to stop. Default 5s.
	ShutdownGrace time.Duration
	// Logger; default a logger that discards.
	Logger logr.Logger
}

// DefaultSocket is where the debug server listens unless told otherwise;
// `gadgetpm dump` reads it there (or from $GADGETPM_DEBUG_SOCKET).
const DefaultSocket = "/run/gadgetpm/debug.sock"

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes, one of them the terminating NUL).
const maxSocketPath = 107

// ErrSocketInUse is returned by Start when another server answers on the
// socket's path.
var ErrSocketInUse = errors.New("debug socket in use")

// Server serves the operator's state on a unix socket for `gadgetpm
// dump` and `gadgetpm queue list`. It is a controller-runtime Runnable that
// every replica runs (no leader election). Start may be called once.
type Server struct {
	opts    Options
	started atomic.Bool
}

// New checks opts and returns a server that listens once Start
// is called.
func New(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("new debug server: Source is required")
	}
	if opts.Path == "" {
		opts.Path = DefaultSocket
	}
	if len(opts.Path) > maxSocketPath {
		return nil, fmt.Errorf("new debug server: socket path %s is %d bytes long, a unix socket path holds at most %d: choose a shorter path", opts.Path, len(opts.Path), maxSocketPath)
	}
	if strings.HasSuffix(opts.Path, "/") {
		return nil, fmt.Errorf("new debug server: socket path %s names a directory, expected a file path such as %s", opts.Path, DefaultSocket)
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	return &Server{opts: opts}, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.opts.Path }

// NeedLeaderElection is false: every replica serves its own state.
func (s *Server) NeedLeaderElection() bool { return false }

// Start listens on the socket (mode 0600), serves until ctx ends, then lets
// requests in flight finish (up to ShutdownGrace) and removes the socket.
// It answers only peers whose uid (SO_PEERCRED) is 0 or the process's own
// effective uid; any other peer gets a 403 with a one-line refusal and its
// connection closed, and is logged (rate-limited).
// A stale socket left by a process that died is replaced; a socket another
// live server answers on is not, and Start returns ErrSocketInUse.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("start debug server: already started")
	}
	ln, own, err := s.listen()
	if err != nil {
		return err
	}
	defer s.removeSocket(ln, own)
	s.opts.Logger.Info("debug server listening", "socket", s.opts.Path)

	guard := &peerGuard{next: s.Handler(), socket: s.opts.Path, ownUID: uint32(os.Geteuid()), log: s.opts.Logger,
		limit: rate.NewLimiter(rate.Every(refusalEvery), refusalBurst)}
	srv := &http.Server{
		Handler:           guard,
		ConnContext:       withPeer,
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve debug socket %s: %w", s.opts.Path, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	return nil
}

// listen binds a temporary name in the socket's directory, makes it 0600
// and links it into place, so no one ever sees the socket with looser
// permissions.
func (s *Server) listen() (*net.UnixListener, os.FileInfo, error) {
	path := s.opts.Path
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("create debug socket directory: %w", err)
	}
	if err := clearStale(path); err != nil {
		return nil, nil, err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if len(tmp) > maxSocketPath {
		// The temporary name does not fit: bind in place and tighten after.
		tmp = path
	}
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on debug socket %s: %w", path, err)
	}
	// The socket file is ours to remove, under its final name.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, nil, fmt.Errorf("set mode of debug socket %s: %w", path, err)
	}
	if tmp != path {
		// A hard link, unlike a rename, never replaces a socket that
		// another server bound since clearStale looked.
		err := os.Link(tmp, path)
		_ = os.Remove(tmp)
		if err != nil {
			_ = ln.Close()
			if errors.Is(err, os.ErrExist) {
				return nil, nil, fmt.Errorf("debug socket %s: another server took the path while this one started; stop it or choose another path: %w", path, ErrSocketInUse)
			}
			return nil, nil, fmt.Errorf("move debug socket into place at %s: %w", path, err)
		}
	}
	own, err := os.Stat(path)
	if err != nil {
		_ = ln.Close()
		return nil, nil, fmt.Errorf("check debug socket %s: %w", path, err)
	}
	return ln, own, nil
}

// clearStale removes a socket at path that nobody answers on.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check debug socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("debug socket %s: the path exists and is not a socket (%s); remove it or choose another path", path, fi.Mode().Type())
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("debug socket %s: another server is listening on it (is another operator running?); stop it or choose another path: %w", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("debug socket %s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale debug socket %s: %w", path, err)
	}
	return nil
}

// removeSocket closes ln and removes the socket file, unless another
// server has replaced it in the meantime.
func (s *Server) removeSocket(ln *net.UnixListener, own os.FileInfo) {
	_ = ln.Close()
	if cur, err := os.Stat(s.opts.Path); err == nil && os.SameFile(own, cur) {
		_ = os.Remove(s.opts.Path)
	}
}

// endpoints lists the endpoints for the 404 of an unknown path.
const endpoints = "GET /dump, /queues, /packages/<key>, /hooks/<key>/<hook>/snapshots (?format=json for JSON)"

// Handler is the HTTP handler behind the socket, exposed so it can be
// mounted elsewhere. It does not check who calls: Start adds the peer
// check on the socket.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, "method %s is not allowed on %s: the debug server is read-only, use GET", r.Method, r.URL.Path)
		return
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", "yaml", "json":
	default:
		httpError(w, http.StatusBadRequest, "unknown format %q: expected yaml (the default) or json", format)
		return
	}
	path := r.URL.Path
	switch {
	case path == "/dump":
		writeBody(w, r, format, redactDump(s.opts.Source.Dump()))
	case path == "/queues":
		writeBody(w, r, format, s.opts.Source.Dump().Queues)
	case strings.HasPrefix(path, "/packages/"):
		key := strings.TrimPrefix(path, "/packages/")
		if key == "" || strings.Contains(key, "/") {
			httpError(w, http.StatusNotFound, "no package key in %s: expected /packages/<namespace>.<name>; list the keys with 'gadgetpm dump' or GET /dump", path)
			return
		}
		p, ok := s.opts.Source.Package(key)
		if !ok {
			httpError(w, http.StatusNotFound, "package %q not found: list the package keys with 'gadgetpm dump' or GET /dump", key)
			return
		}
		writeBody(w, r, format, redactPackage(p))
	case strings.HasPrefix(path, "/hooks/"):
		s.serveSnapshots(w, r, format)
	default:
		httpError(w, http.StatusNotFound, "no endpoint %s: the debug server serves %s", path, endpoints)
	}
}

// serveSnapshots answers /hooks/<key>/<hook>/snapshots; the hook's name is
// its path under hooks/ and may hold slashes, the key never does.
func (s *Server) serveSnapshots(w http.ResponseWriter, r *http.Request, format string) {
	rest := strings.TrimPrefix(r.URL.Path, "/hooks/")
	key, hook, _ := strings.Cut(rest, "/")
	hook, isSnap := strings.CutSuffix(hook, "/snapshots")
	if key == "" || !isSnap || hook == "" {
		httpError(w, http.StatusNotFound, "malformed path %s: expected /hooks/<key>/<hook>/snapshots; list packages and their hooks with 'gadgetpm dump'", r.URL.Path)
		return
	}
	p, ok := s.opts.Source.Package(key)
	if !ok {
		httpError(w, http.StatusNotFound, "package %q not found: list the package keys with 'gadgetpm dump' or GET /dump", key)
		return
	}
	snaps, ok := s.opts.Source.HookSnapshots(key, hook)
	if !ok {
		names := make([]string, 0, len(p.Hooks))
		for _, h := range p.Hooks {
			names = append(names, h.Name)
		}
		sort.Strings(names)
		list := "it has no hooks"
		if len(names) > 0 {
			list = "its hooks are " + strings.Join(names, ", ")
		}
		httpError(w, http.StatusNotFound, "package %q has no hook %q: %s", key, hook, list)
		return
	}
	if snaps == nil {
		snaps = dump.Snapshots{}
	}
	writeBody(w, r, format, redactSnapshots(snaps))
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

func writeBody(w http.ResponseWriter, r *http.Request, format string, v any) {
	var (
		body []byte
		err  error
	)
	if format == "json" {
		// Unescaped HTML characters, so "<redacted>" reads as it is.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		err = enc.Encode(v)
		body = buf.Bytes()
		w.Header().Set("Content-Type", "application/json")
	} else {
		body, err = MarshalYAML(v)
		w.Header().Set("Content-Type", "application/yaml")
	}
	if err != nil {
		w.Header().Del("Content-Type")
		httpError(w, http.StatusInternalServerError, "render %s: %v", r.URL.Path, err)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// MarshalYAML renders v as block-style YAML with the field names and order
// of its JSON encoding, so the YAML and JSON outputs always agree (and
// embedded Kubernetes objects and raw JSON print as objects, not bytes).
func MarshalYAML(v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal to json: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("read json as yaml: %w", err)
	}
	plainStyle(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("marshal yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// plainStyle drops the flow and quoting styles JSON brings, leaving the
// encoder to quote only what needs it, plus the strings YAML 1.1 readers
// (kubectl, PyYAML) would take for booleans.
func plainStyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && yaml11Bools[strings.ToLower(n.Value)] {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		plainStyle(c)
	}
}

var yaml11Bools = map[string]bool{"y": true, "yes": true, "n": true, "no": true, "on": true, "off": true, "true": true, "false": true}
