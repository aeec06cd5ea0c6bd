package eventually

import (
	"fmt"
	"time"
)

// TB is the part of testing.TB the package needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Polling starts at MinInterval and doubles up to MaxInterval, so a
// condition that holds soon is seen soon and a slow one costs little CPU.
const (
	MinInterval = 5 * time.Millisecond
	MaxInterval = 200 * time.Millisecond
)

// True polls cond until it returns true; after timeout it fails t with
// "timed out after <timeout> waiting for <what>".
func True(t TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll(timeout, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// NoError polls f until it returns nil; after timeout it fails t with
// what and f's last error, which should say what was seen instead.
func NoError(t TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := poll(timeout, f); err != nil {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
}

// Value polls f until it returns a nil error and returns its value; after
// timeout it fails t as NoError does.
func Value[V any](t TB, timeout time.Duration, what string, f func() (V, error)) V {
	t.Helper()
	var v V
	NoError(t, timeout, what, func() error {
		var err error
		v, err = f()
		return err
	})
	return v
}

var errNotYet = fmt.Errorf("not yet")

// poll runs f until it returns nil or timeout passes, and returns f's last
// error then. f runs at least once, even with a zero timeout.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	interval := MinInterval
	for {
		err := f()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		time.Sleep(min(interval, left))
		interval = min(2*interval, MaxInterval)
	}
}
