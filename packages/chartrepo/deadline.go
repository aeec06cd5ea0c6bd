package chartrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ErrTimeout: a request to the repository got no complete answer within
// Options.Timeout. Its connection was closed.
var ErrTimeout = errors.New("timed out")

// deadlineTransport runs every request under the caller's context and a
// deadline of its own, Options.Timeout, from the request until its body is
// read and closed. Helm's getter and registry client send requests with a
// background context, so without it a repository that accepts connections
// and never answers would hold the caller until the server gives up.
// Ending the context closes the connection.
type deadlineTransport struct {
	base    http.RoundTripper
	ctx     context.Context
	timeout time.Duration
}

func (t *deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	// A request's own context (the registry client's) still ends it.
	stop := context.AfterFunc(req.Context(), cancel)
	release := func() {
		stop()
		cancel()
	}
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		release()
		// http.Client names the method and URL around this error.
		return nil, t.explain(ctx, "", err)
	}
	resp.Body = &deadlineBody{ReadCloser: resp.Body, ctx: ctx, t: t, url: req.URL.Redacted(), release: release}
	return resp, nil
}

// explain turns the end of the request's own deadline into ErrTimeout; the
// caller's cancellation and other errors pass through.
func (t *deadlineTransport) explain(ctx context.Context, url string, err error) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || t.ctx.Err() != nil {
		return err
	}
	if url != "" {
		url = " from " + url
	}
	return fmt.Errorf("no complete answer%s within the repository's timeout %s (spec.timeout): %w; the server accepted the connection but did not answer in time, so it was closed", url, t.timeout, ErrTimeout)
}

// deadlineBody keeps the request's deadline until the body is closed.
type deadlineBody struct {
	io.ReadCloser
	ctx     context.Context
	t       *deadlineTransport
	url     string
	release func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = b.t.explain(b.ctx, b.url, err)
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	defer b.release()
	return b.ReadCloser.Close()
}

// bound returns the transport for requests made on behalf of ctx.
func (c *Client) bound(ctx context.Context) http.RoundTripper {
	return &deadlineTransport{base: c.tr, ctx: ctx, timeout: c.opts.Timeout}
}
