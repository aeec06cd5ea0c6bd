package packagetest

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Blackhole is a TCP server that accepts every connection and never
// writes a byte: a repository that hangs. It records when each connection
// was accepted and when the client closed it.
type Blackhole struct {
	// Addr is host:port.
	Addr string

	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns []*HeldConn // guarded by mu
}

// HeldConn is one connection a Blackhole holds.
type HeldConn struct {
	Accepted time.Time
	conn     net.Conn
	mu       sync.Mutex
	closed   time.Time // guarded by mu: when the client closed it
}

// Closed is when the client closed the connection; zero while it is open.
func (c *HeldConn) Closed() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// NewBlackhole listens on a free loopback port until the test ends.
func NewBlackhole(t testing.TB) *Blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Blackhole{Addr: ln.Addr().String(), ln: ln}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			_ = c.conn.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *Blackhole) accept() {
	defer b.wg.Done()
	for {
		conn, err := b.ln.Accept()
		if err != nil {
			return // closed at the end of the test
		}
		c := &HeldConn{Accepted: time.Now(), conn: conn}
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			// Read (and drop) the request; a read ends when the client
			// closes the connection, or the test ends.
			_, err := io.Copy(io.Discard, conn)
			if err == nil || !errors.Is(err, net.ErrClosed) {
				c.mu.Lock()
				c.closed = time.Now()
				c.mu.Unlock()
			}
		}()
	}
}

// Conns returns the connections accepted so far, oldest first.
func (b *Blackhole) Conns() []*HeldConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*HeldConn(nil), b.conns...)
}
