package debugserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// Refusals are logged at most refusalBurst at once, then one every
// refusalEvery, so that a client retrying in a loop cannot flood the log;
// the next line logged counts the refusals left out.
const (
	refusalBurst = 5
	refusalEvery = 10 * time.Second
)

// peer is who is at the other end of a connection, as the kernel saw it
// when the peer connected (SO_PEERCRED).
type peer struct {
	uid, gid uint32
	pid      int32
	// err is why the credentials could not be read; the peer is refused.
	err error
}

type peerKey struct{}

// withPeer is the http.Server's ConnContext: it reads the peer's
// credentials once per connection.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerOf(c))
}

func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{err: fmt.Errorf("connection is %T, not a unix socket", c)}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: fmt.Errorf("read peer credentials: %w", err)}
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: fmt.Errorf("read peer credentials: %w", err)}
	}
	if cerr != nil {
		return peer{err: fmt.Errorf("read peer credentials (SO_PEERCRED): %w", cerr)}
	}
	return peer{uid: cred.Uid, gid: cred.Gid, pid: cred.Pid}
}

// peerGuard answers only peers whose uid is root or the server's own; it
// refuses the others with a 403 whose body is one line saying what to do,
// closes their connection, and logs them through a rate limit.
type peerGuard struct {
	next   http.Handler
	socket string
	// ownUID is the server process's effective uid.
	ownUID uint32
	log    logr.Logger
	limit  *rate.Limiter
	// suppressed counts refusals not logged since the last line.
	suppressed atomic.Int64
}

func (g *peerGuard) allowed(uid uint32) bool { return uid == 0 || uid == g.ownUID }

func (g *peerGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := r.Context().Value(peerKey{}).(peer)
	if !ok {
		p.err = errors.New("no peer credentials for the connection")
	}
	if p.err == nil && g.allowed(p.uid) {
		g.next.ServeHTTP(w, r)
		return
	}
	g.logRefusal(p)
	// The refused connection is closed after this answer: nothing it
	// sends later is read.
	w.Header().Set("Connection", "close")
	if p.err != nil {
		httpError(w, http.StatusForbidden, "gadgetpm dump: permission denied: cannot tell who is connecting to %s (%v); %s", g.socket, p.err, g.whoMay())
		return
	}
	httpError(w, http.StatusForbidden, "gadgetpm dump: permission denied: uid %d is not allowed on %s; %s", p.uid, g.socket, g.whoMay())
}

// whoMay says whom to run as.
func (g *peerGuard) whoMay() string {
	if g.ownUID == 0 {
		return "run as root"
	}
	return fmt.Sprintf("run as root or as uid %d", g.ownUID)
}

func (g *peerGuard) logRefusal(p peer) {
	if !g.limit.Allow() {
		g.suppressed.Add(1)
		return
	}
	kv := []any{"socket", g.socket, "suppressedSinceLastLine", g.suppressed.Swap(0)}
	if p.err != nil {
		g.log.Info("refused a debug socket peer: its credentials cannot be read", append(kv, "error", p.err.Error())...)
		return
	}
	g.log.Info("refused a debug socket peer: only root and the operator's own uid may read the dump",
		append(kv, "uid", p.uid, "gid", p.gid, "pid", p.pid, "allowedUIDs", g.allowedUIDs())...)
}

func (g *peerGuard) allowedUIDs() []uint32 {
	if g.ownUID == 0 {
		return []uint32{0}
	}
	return []uint32{0, g.ownUID}
}
