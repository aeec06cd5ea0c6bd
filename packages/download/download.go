package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// ErrTooLarge is wrapped by every error of content over its limit.
var ErrTooLarge = errors.New("over the size limit")

// Defaults of the limits, shared by both roles.
const (
	// DefaultMaxPackageBytes caps one package archive (an HTTP download
	// or an OCI chart layer).
	DefaultMaxPackageBytes = 64 << 20
	// DefaultMaxIndexBytes caps one index.yaml or OCI manifest.
	DefaultMaxIndexBytes = 32 << 20
	// MaxProvenanceBytes caps one provenance (.prov) file: a signature
	// and the chart's metadata, a few KiB.
	MaxProvenanceBytes = 1 << 20
)

// Flags that set the limits; errors name them so the message says what
// to do.
const (
	FlagMaxPackageSize = "--max-package-size"
	FlagMaxIndexSize   = "--max-index-size"
)

// Limit is the most bytes one read may return, and how to name it.
type Limit struct {
	// Bytes is the limit; at most 0 means no content at all.
	Bytes int64
	// What is the kind of content ("package archive", "index"), for
	// messages.
	What string
	// Flag raises the limit (FlagMaxPackageSize), for messages; empty
	// when it is fixed.
	Flag string
}

// TooLarge is the error of content of size bytes (-1: more than the limit,
// size unknown) over l.
func (l Limit) TooLarge(subject string, size int64) error {
	have := "more than the limit"
	if size >= 0 {
		have = fmt.Sprintf("%d bytes (%s)", size, human(size))
	}
	fix := "the repository must serve a smaller file"
	if l.Flag != "" {
		fix = fmt.Sprintf("make it smaller, or raise the limit with %s", l.Flag)
	}
	return fmt.Errorf("%s %s is %s: %w of %d bytes (%s) for a %s; %s", l.What, subject, have, ErrTooLarge, l.Bytes, human(l.Bytes), l.What, fix)
}

// ReadAll reads r to its end, at most l.Bytes: it stops reading, and
// fails, as soon as one byte more arrives. subject names the content
// (a URL, a path) in the error.
func ReadAll(r io.Reader, subject string, l Limit) ([]byte, error) {
	return readAll(r, subject, l, 0)
}

// readAll is ReadAll with the expected size, when known, as the first
// buffer's: the buffer doubles (io.ReadAll's grows by a quarter, which
// allocates about 5x the limit in all on the way to it), so a read
// allocates at most about twice the limit.
func readAll(r io.Reader, subject string, l Limit, hint int64) ([]byte, error) {
	max := l.Bytes + 1
	size := min(max, 32<<10)
	if hint > 0 {
		size = min(max, hint+1)
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= max {
				return nil, l.TooLarge(subject, -1)
			}
			next := make([]byte, len(buf), min(max, 2*int64(cap(buf))))
			copy(next, buf)
			buf = next
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
	}
	if int64(len(buf)) > l.Bytes {
		return nil, l.TooLarge(subject, -1)
	}
	return buf, nil
}

// File reads the file at p through l: refused by its size before it is
// read, and read through the limit, since it may still grow.
func File(p string, l Limit) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > l.Bytes {
		return nil, l.TooLarge(p, fi.Size())
	}
	return readAll(f, p, l, 0)
}

// Get sends req with c and returns the body of a 200 answer, at most
// l.Bytes: a Content-Length over the limit is refused before the body is
// read, and a body without one is read through the limit. Another status
// is an error saying it ("GET <url>: 404 Not Found").
func Get(c *http.Client, req *http.Request, l Limit) ([]byte, error) {
	subject := redacted(req.URL)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", subject, resp.Status)
	}
	if resp.ContentLength > l.Bytes {
		return nil, l.TooLarge(subject, resp.ContentLength)
	}
	return readAll(resp.Body, subject, l, resp.ContentLength)
}

// Blob fetches the blob or manifest desc names from f once its
// descriptor size is within l; the bytes are checked against the
// descriptor's size and digest as they are read, so a registry that
// serves more than the descriptor says is refused too.
func Blob(ctx context.Context, f content.Fetcher, subject string, desc ocispec.Descriptor, l Limit) ([]byte, error) {
	if err := CheckDescriptor(subject, desc, l); err != nil {
		return nil, err
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", subject, err)
	}
	defer rc.Close()
	data, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subject, err)
	}
	return data, nil
}

// CheckDescriptor refuses a descriptor whose size is over l (or
// negative).
func CheckDescriptor(subject string, desc ocispec.Descriptor, l Limit) error {
	if desc.Size > l.Bytes {
		return l.TooLarge(subject+" (its descriptor's size)", desc.Size)
	}
	if desc.Size < 0 {
		return fmt.Errorf("%s: descriptor size %d is negative", subject, desc.Size)
	}
	return nil
}

// Registry is the registry repository ref ("<host>/<path>") reached with
// c, over plain HTTP when plainHTTP, with username and password when
// either is set; never with the machine's docker or helm login state.
func Registry(ref string, c *http.Client, plainHTTP bool, username, password string) (*remote.Repository, error) {
	reg, err := remote.NewRepository(ref)
	if err != nil {
		return nil, fmt.Errorf("registry repository %s: %w", ref, err)
	}
	reg.PlainHTTP = plainHTTP
	ac := &auth.Client{Client: c, Cache: auth.NewCache()}
	if username != "" || password != "" {
		host := ref
		if i := strings.IndexByte(ref, '/'); i >= 0 {
			host = ref[:i]
		}
		ac.Credential = auth.StaticCredential(host, auth.Credential{Username: username, Password: password})
	}
	reg.Client = ac
	return reg, nil
}

func redacted(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}

// human is n in the largest binary unit that keeps it whole or one
// decimal: "64 MiB", "1.5 GiB".
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/float64(div)), ".0") + " " + string("KMGTP"[exp]) + "iB"
}
