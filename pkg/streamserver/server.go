package streamserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// Defaults of Options.
const (
	// DefaultBindAddress is the default Options.BindAddress.
	DefaultBindAddress = ":8443"
	// DefaultAllowTTL is the default Options.AllowTTL: 1m.
	DefaultAllowTTL = time.Minute
	// DefaultDenyTTL is the default Options.DenyTTL: 10s.
	DefaultDenyTTL = 10 * time.Second
	// CertFile and KeyFile are the names of the certificate and its key
	// in Options.CertDir (those of a kubernetes.io/tls Secret).
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	// shutdownTimeout bounds how long Start waits for requests after
	// its context ends; streams end with the Hub's Stop.
	shutdownTimeout = 5 * time.Second
)

// Options configure a Server.
type Options struct {
	// BindAddress is the TLS listener's address; default
	// DefaultBindAddress.
	BindAddress string
	// CertDir holds CertFile and KeyFile, read at start and again when
	// they change (a mounted Secret renewed by cert-manager). Empty: a
	// self-signed certificate generated at start, for the host's name,
	// "localhost" and 127.0.0.1; clients cannot verify it.
	CertDir string
	// Prefix is the path the handler serves, "<Prefix><namespace>/<name>";
	// default "/traces/". Other paths get 404.
	Prefix string
	// AllowTTL is how long an authenticated token and an allowed access
	// are remembered; default DefaultAllowTTL. DenyTTL is how long a
	// rejected token and a denied access are; default DefaultDenyTTL.
	AllowTTL, DenyTTL time.Duration
	// Logger records refused readers and failed reviews; default
	// discards.
	Logger logr.Logger
}

// Server serves a stream handler over TLS to authenticated, authorized
// readers. It is a controller-runtime Runnable that needs no leader
// election: create it with New, then Start it (once).
//
// A request gets 401 without a bearer token or with one the API server
// rejects, 403 when its user may not get the Trace its path names, 503
// when the API server cannot be asked; each with a one-line body saying
// what is missing. Other requests reach the handler.
type Server struct {
	opts    Options
	handler http.Handler
	certs   *certwatcher.CertWatcher // nil with a generated certificate
	tlsCfg  *tls.Config

	bound chan struct{} // closed once Start listens (or fails to)
	mu    sync.Mutex
	// addr is the listener's address once bound; guarded by mu.
	addr string
}

// New returns a Server of handler that reviews tokens and access
// through the API server cfg reaches (the node's own identity needs
// create on tokenreviews and subjectaccessreviews). It reads or
// generates the certificate and starts nothing.
func New(cfg *rest.Config, handler http.Handler, opts Options) (*Server, error) {
	if opts.BindAddress == "" {
		opts.BindAddress = DefaultBindAddress
	}
	if opts.Prefix == "" {
		opts.Prefix = "/traces/"
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.AllowTTL <= 0 {
		opts.AllowTTL = DefaultAllowTTL
	}
	if opts.DenyTTL <= 0 {
		opts.DenyTTL = DefaultDenyTTL
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	authn, err := authenticationclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("stream server: %w", err)
	}
	authz, err := authorizationclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("stream server: %w", err)
	}
	s := &Server{opts: opts, bound: make(chan struct{})}
	s.tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CertDir != "" {
		certPath, keyPath := filepath.Join(opts.CertDir, CertFile), filepath.Join(opts.CertDir, KeyFile)
		if s.certs, err = certwatcher.New(certPath, keyPath); err != nil {
			return nil, fmt.Errorf("stream server: read the certificate of --stream-cert-dir %s (want %s and %s, PEM): %w", opts.CertDir, CertFile, KeyFile, err)
		}
		s.tlsCfg.GetCertificate = s.certs.GetCertificate
	} else {
		cert, err := selfSigned()
		if err != nil {
			return nil, fmt.Errorf("stream server: %w", err)
		}
		s.tlsCfg.Certificates = []tls.Certificate{cert}
	}
	now := time.Now
	mux := http.NewServeMux()
	mux.Handle(opts.Prefix, &authorizer{
		tokens: authn.TokenReviews(), reviews: authz.SubjectAccessReviews(), prefix: opts.Prefix,
		allowTTL: opts.AllowTTL, denyTTL: opts.DenyTTL, log: opts.Logger, next: handler,
		identities: newTTLCache[identity](now), decisions: newTTLCache[decision](now),
	})
	s.handler = mux
	return s, nil
}

// selfSigned generates a certificate for the host's name, localhost and
// 127.0.0.1.
func selfSigned() (tls.Certificate, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, []string{"localhost"})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate a self-signed certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load the self-signed certificate: %w", err)
	}
	return cert, nil
}

// NeedLeaderElection is false: every replica serves its node's streams.
func (*Server) NeedLeaderElection() bool { return false }

// Addr waits until Start listens and returns the listener's address
// ("" when it could not listen), or ctx's error.
func (s *Server) Addr(ctx context.Context) (string, error) {
	select {
	case <-s.bound:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.addr, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Start listens and serves until ctx ends, then shuts the listener down
// and waits (at most a few seconds) for the requests in flight. It
// returns an error when it cannot listen or serve.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.opts.BindAddress)
	if err != nil {
		close(s.bound)
		return fmt.Errorf("stream server: listen on --stream-bind-address %s: %w", s.opts.BindAddress, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	close(s.bound)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.certs != nil {
		wg.Go(func() {
			if err := s.certs.Start(ctx); err != nil {
				s.opts.Logger.Error(err, "stream server: cannot watch the certificate for renewals", "dir", s.opts.CertDir)
			}
		})
	}
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// HTTP/1.1 only: a stream is one long response, and HTTP/2's
		// stream multiplexing would let one connection hold many
		// clients.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	served := make(chan error, 1)
	wg.Go(func() { served <- srv.ServeTLS(ln, "", "") })
	s.opts.Logger.Info("serving trace streams over TLS", "address", s.addr, "certDir", s.opts.CertDir)
	select {
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("stream server: %w", err)
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	return nil
}
