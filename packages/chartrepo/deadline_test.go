package chartrepo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
)

// blackholeCalls are the requests of a sync and of a package download,
// each against a server that accepts the connection and never answers.
var blackholeCalls = []struct {
	name string
	url  func(addr string) string
	call func(ctx context.Context, c *chartrepo.Client) error
}{
	{"index", func(a string) string { return "http://" + a }, func(ctx context.Context, c *chartrepo.Client) error {
		_, err := c.Index(ctx)
		return err
	}},
	{"archive", func(a string) string { return "http://" + a }, func(ctx context.Context, c *chartrepo.Client) error {
		_, err := c.Download(ctx, chartrepo.Version{Name: "trace-exec", Version: "1.0.0", Digest: strings.Repeat("0", 64), URLs: []string{"trace-exec-1.0.0.tgz"}})
		return err
	}},
	{"oci tags", func(a string) string { return "oci://" + a + "/gadgets" }, func(ctx context.Context, c *chartrepo.Client) error {
		_, err := c.Index(ctx, "trace-exec")
		return err
	}},
	{"oci pull", func(a string) string { return "oci://" + a + "/gadgets" }, func(ctx context.Context, c *chartrepo.Client) error {
		_, err := c.Download(ctx, chartrepo.Version{Name: "trace-exec", Version: "1.0.0"})
		return err
	}},
}

// TestBlackholedRequestsEndAtTheTimeout: every request of a sync or a
// download ends at Options.Timeout with ErrTimeout, a message naming the
// URL and spec.timeout, and its connection closed: the server sees the
// close no earlier than the timeout after the call began.
func TestBlackholedRequestsEndAtTheTimeout(t *testing.T) {
	const timeout = time.Second
	for _, tc := range blackholeCalls {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bh := packagetest.NewBlackhole(t)
			c, err := chartrepo.New(chartrepo.Options{URL: tc.url(bh.Addr), Timeout: timeout, PlainHTTP: true})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = tc.call(context.Background(), c)
			if !errors.Is(err, chartrepo.ErrTimeout) {
				t.Fatalf("error %v, want ErrTimeout", err)
			}
			for _, w := range []string{bh.Addr, "timeout 1s (spec.timeout)"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			conns := bh.Conns()
			if len(conns) == 0 {
				t.Fatal("no connection reached the server")
			}
			closed := eventually.Value(t, 10*time.Second, "the client to close its connection", func() (time.Time, error) {
				if at := conns[0].Closed(); !at.IsZero() {
					return at, nil
				}
				return time.Time{}, errors.New("still open")
			})
			if closed.Before(start.Add(timeout)) {
				t.Errorf("connection closed %v after the call began, before the timeout %v", closed.Sub(start), timeout)
			}
		})
	}
}

// TestCancelClosesTheConnection: ending the caller's context (the
// operator stops, the reconcile is cancelled) ends a hanging request at
// once, long before its timeout, and closes its connection.
func TestCancelClosesTheConnection(t *testing.T) {
	for _, tc := range blackholeCalls {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bh := packagetest.NewBlackhole(t)
			c, err := chartrepo.New(chartrepo.Options{URL: tc.url(bh.Addr), Timeout: time.Hour, PlainHTTP: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tc.call(ctx, c) }()
			eventually.True(t, 10*time.Second, "a connection to the server", func() bool { return len(bh.Conns()) > 0 })
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("error %v, want context.Canceled", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the call ignored its cancelled context")
			}
			eventually.True(t, 10*time.Second, "the connection to be closed", func() bool { return !bh.Conns()[0].Closed().IsZero() })
		})
	}
}
