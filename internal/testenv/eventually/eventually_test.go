package eventually_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
)

// recorder stands for a *testing.T whose Fatalf ends the test.
type recorder struct{ msg string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
}

func TestTrueWaitsForTheCondition(t *testing.T) {
	var n atomic.Int32
	var r recorder
	eventually.True(&r, 10*time.Second, "three polls", func() bool { return n.Add(1) == 3 })
	if r.msg != "" || n.Load() != 3 {
		t.Fatalf("failed with %q after %d polls, want success after 3", r.msg, n.Load())
	}
}

func TestTrueFailsNamingWhatItAwaited(t *testing.T) {
	var r recorder
	start := time.Now()
	eventually.True(&r, 50*time.Millisecond, "the queue to drain", func() bool { return false })
	if want := "timed out after 50ms waiting for the queue to drain"; r.msg != want {
		t.Fatalf("message %q, want %q", r.msg, want)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("gave up before the timeout")
	}
}

func TestNoErrorReportsTheLastError(t *testing.T) {
	var r recorder
	var n atomic.Int32
	eventually.NoError(&r, 30*time.Millisecond, "Ready", func() error {
		return fmt.Errorf("phase is Pending (poll %d)", n.Add(1))
	})
	if !strings.HasPrefix(r.msg, "timed out after 30ms waiting for Ready: phase is Pending (poll ") || strings.HasSuffix(r.msg, "(poll 1)") {
		t.Fatalf("message %q, want the last of several errors", r.msg)
	}
}

func TestValueReturnsWhatTheLastPollSaw(t *testing.T) {
	var r recorder
	var n atomic.Int32
	got := eventually.Value(&r, 10*time.Second, "two", func() (int32, error) {
		if v := n.Add(1); v >= 2 {
			return v, nil
		}
		return 0, errors.New("not two yet")
	})
	if r.msg != "" || got != 2 {
		t.Fatalf("Value = %d (%q), want 2", got, r.msg)
	}
}

func TestZeroTimeoutPollsOnce(t *testing.T) {
	var r recorder
	var n atomic.Int32
	eventually.True(&r, 0, "once", func() bool { n.Add(1); return true })
	if r.msg != "" || n.Load() != 1 {
		t.Fatalf("%d polls, %q", n.Load(), r.msg)
	}
}
