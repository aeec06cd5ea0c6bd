package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// The protocol between a Remote and a Server, over one unix-socket
// connection per run: the client sends one request frame; the server
// answers with stdout and stderr frames as the command prints, then one
// exit frame. A client closing its connection kills the run.
//
// A frame is a kind byte, a big-endian uint32 length and the payload.
const (
	frameRequest = 'r'
	frameStdout  = 'o'
	frameStderr  = 'e'
	frameExit    = 'x'
	// maxRequest bounds a request frame (the hook's environment, its
	// arguments and paths).
	maxRequest = 4 << 20
	// maxOutputFrame bounds one output frame; the server splits longer
	// writes.
	maxOutputFrame = 64 << 10
	// serverWaitDelay bounds the wait for a sandboxed run's output once
	// its init exited: the kernel has killed everything else by then.
	serverWaitDelay = 2 * time.Second
)

// request is a Cmd without its writers: what a Remote sends a server, and
// the command part of what the init gets.
type request struct {
	Path    string   `json:"path"`
	Args    []string `json:"args,omitempty"`
	Dir     string   `json:"dir"`
	Env     []string `json:"env,omitempty"`
	Package string   `json:"package,omitempty"`
	RunDir  string   `json:"runDir,omitempty"`
	Hide    []string `json:"hide,omitempty"`
}

// exitStatus ends a run's answer.
type exitStatus struct {
	Code int `json:"code"`
	// Error is the run's error (the exit status, a start failure), empty
	// when it exited 0; Start tells a start failure.
	Error string `json:"error,omitempty"`
	Start bool   `json:"start,omitempty"`
}

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	hdr := [5]byte{kind}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(append(hdr[:], payload...)); err != nil {
		return err
	}
	return nil
}

func readFrame(r io.Reader, limit uint32) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > limit {
		return 0, nil, fmt.Errorf("frame of %d bytes: at most %d", n, limit)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// Remote runs commands through a sandbox server (gadgetpm hook-sandbox):
// the operator then needs no privilege of its own to sandbox hooks. Run
// directories must be on a filesystem both processes see at the same
// paths. It is safe for concurrent use.
type Remote struct {
	socket string
	hide   []string
}

// NewRemote returns a Remote for the server on socket, after checking that
// it answers. Every command it sends hides hide (as Options.Hide) besides
// what the server hides itself.
func NewRemote(socket string, hide []string) (*Remote, error) {
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("hook sandbox server %s: %w: start `gadgetpm hook-sandbox --socket %s` beside the operator, with the privileges the sandbox needs", socket, err, socket)
	}
	_ = conn.Close()
	abs, err := absPaths(hide)
	if err != nil {
		return nil, err
	}
	return &Remote{socket: socket, hide: abs}, nil
}

// Launch sends c to the server and streams its output into c.Stdout and
// c.Stderr until it exits; ctx ending closes the connection, which kills
// the run. The server gives c.RunDir to the hook user for the run and
// back to this process's user after it.
func (r *Remote) Launch(ctx context.Context, c Cmd) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", r.socket)
	if err != nil {
		return -1, &StartError{Err: fmt.Errorf("reach the hook sandbox server: %w", err)}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c.Hide = append(append([]string(nil), r.hide...), c.Hide...)
	req, _ := json.Marshal(c.request()) // strings only: cannot fail
	// A server that refuses the client answers and closes at once: its
	// answer is still there to read when the write failed.
	sendErr := writeFrame(conn, frameRequest, req)
	for {
		kind, payload, err := readFrame(conn, maxOutputFrame)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return -1, ctx.Err()
			case sendErr != nil:
				return -1, &StartError{Err: fmt.Errorf("send the run to the hook sandbox server: %w", sendErr)}
			}
			return -1, fmt.Errorf("hook sandbox server: the connection ended before the run did: %w", err)
		}
		switch kind {
		case frameStdout:
			if c.Stdout != nil {
				_, _ = c.Stdout.Write(payload)
			}
		case frameStderr:
			if c.Stderr != nil {
				_, _ = c.Stderr.Write(payload)
			}
		case frameExit:
			var st exitStatus
			if err := json.Unmarshal(payload, &st); err != nil {
				return -1, fmt.Errorf("hook sandbox server: exit status: %w", err)
			}
			switch {
			case st.Start:
				return st.Code, &StartError{Err: errors.New(st.Error)}
			case st.Error != "":
				return st.Code, errors.New(st.Error)
			}
			return st.Code, nil
		default:
			return -1, fmt.Errorf("hook sandbox server: unknown frame %q", kind)
		}
	}
}

// ServerOptions configure Serve.
type ServerOptions struct {
	// Socket is the unix socket's path; a stale socket there is
	// replaced. Required.
	Socket string
	// AllowUIDs are the peers (SO_PEERCRED) whose runs are served;
	// default root and this process's own user.
	AllowUIDs []uint32
	// Logger; default none.
	Logger logr.Logger
}

// Serve runs commands for Remote clients in s until ctx ends, then stops
// listening, kills the runs in progress and waits for them. Each
// connection is one run: the run ends when the client closes it.
func Serve(ctx context.Context, s *Sandbox, opts ServerOptions) error {
	if s == nil {
		return errors.New("hook sandbox server: no sandbox")
	}
	if opts.Socket == "" {
		return errors.New("hook sandbox server: the socket path is required")
	}
	if len(opts.AllowUIDs) == 0 {
		opts.AllowUIDs = []uint32{0, uint32(os.Getuid())}
	}
	if err := os.Remove(opts.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hook sandbox server: replace %s: %w", opts.Socket, err)
	}
	ln, err := net.Listen("unix", opts.Socket)
	if err != nil {
		return fmt.Errorf("hook sandbox server: %w", err)
	}
	// SO_PEERCRED decides; the mode only keeps the socket from other
	// users' processes that share the directory.
	if err := os.Chmod(opts.Socket, 0o666); err != nil {
		_ = ln.Close()
		return fmt.Errorf("hook sandbox server: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	opts.Logger.Info("hook sandbox server listening", "socket", opts.Socket)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("hook sandbox server: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			serveRun(ctx, s, conn.(*net.UnixConn), opts)
		}()
	}
}

// serveRun runs the one command of a connection.
func serveRun(ctx context.Context, s *Sandbox, conn *net.UnixConn, opts ServerOptions) {
	log := opts.Logger
	peer, err := peerCred(conn)
	if err != nil {
		log.Error(err, "hook sandbox server: read the client's credentials")
		return
	}
	allowed := false
	for _, uid := range opts.AllowUIDs {
		allowed = allowed || peer.Uid == uid
	}
	if !allowed {
		log.Info("hook sandbox server: refused a client", "uid", peer.Uid, "pid", peer.Pid, "allowedUIDs", opts.AllowUIDs)
		_ = sendExit(conn, exitStatus{Code: -1, Start: true, Error: fmt.Sprintf("uid %d may not run hooks through this server", peer.Uid)})
		return
	}
	kind, raw, err := readFrame(conn, maxRequest)
	var req request
	if err == nil && kind != frameRequest {
		err = fmt.Errorf("frame %q instead of a request", kind)
	}
	if err == nil {
		err = json.Unmarshal(raw, &req)
	}
	if err == nil && (!filepath.IsAbs(req.Path) || (req.RunDir != "" && !filepath.IsAbs(req.RunDir)) || (req.Package != "" && !filepath.IsAbs(req.Package))) {
		err = errors.New("path, runDir and package must be absolute")
	}
	if err == nil && req.RunDir != "" {
		err = ownedBy(req.RunDir, peer.Uid)
	}
	if err != nil {
		_ = sendExit(conn, exitStatus{Code: -1, Start: true, Error: "bad request: " + err.Error()})
		return
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The client closing its side (or dying) kills the run.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		_, _ = io.Copy(io.Discard, conn)
	}()
	out := &frameWriter{conn: conn}
	code, err := s.Launch(runCtx, Cmd{Path: req.Path, Args: req.Args, Dir: req.Dir, Env: req.Env, Package: req.Package, RunDir: req.RunDir, Hide: req.Hide,
		Stdout: out.stream(frameStdout), Stderr: out.stream(frameStderr), WaitDelay: serverWaitDelay})
	if req.RunDir != "" {
		// The client reads the results and removes the directory.
		if cerr := chownTree(req.RunDir, int(peer.Uid), int(peer.Gid)); cerr != nil && err == nil {
			err = cerr
		}
	}
	st := exitStatus{Code: code}
	var start *StartError
	if err != nil {
		st.Error, st.Start = err.Error(), errors.As(err, &start)
	}
	_ = out.exit(st)
	_ = conn.CloseWrite()
	cancel()
	_ = conn.Close()
	wg.Wait()
}

func sendExit(conn net.Conn, st exitStatus) error {
	raw, _ := json.Marshal(st) // a number, a string and a bool: cannot fail
	return writeFrame(conn, frameExit, raw)
}

// frameWriter writes a run's output as frames; exec copies stdout and
// stderr from two goroutines, hence the lock.
type frameWriter struct {
	mu   sync.Mutex
	conn net.Conn
}

type streamWriter struct {
	w    *frameWriter
	kind byte
}

func (f *frameWriter) stream(kind byte) io.Writer { return &streamWriter{w: f, kind: kind} }

func (s *streamWriter) Write(p []byte) (int, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxOutputFrame)
		if err := writeFrame(s.w.conn, s.kind, rest[:n]); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return len(p), nil
}

func (f *frameWriter) exit(st exitStatus) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sendExit(f.conn, st)
}

func peerCred(conn *net.UnixConn) (*syscall.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}

// ownedBy checks that dir is a directory (not a link to one) of uid: the
// server gives run directories to the hook user and back, and must never
// be made to give away a tree its client does not own.
func ownedBy(dir string, uid uint32) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || st.Uid != uid {
		return fmt.Errorf("run directory %s: want a directory of uid %d, the client's own", dir, uid)
	}
	return nil
}

// chownTree gives root and everything below it to uid:gid.
func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("give %s to %d:%d: %w", p, uid, gid, err)
		}
		return nil
	})
}
