package output

import (
	"context"
	"strings"
	"sync"
)

// DefaultStatusLimit is the default StatusOptions.Limit: 64 KiB.
const DefaultStatusLimit = 64 << 10

// minStatusLimit fits the empty array "[]".
const minStatusLimit = 2

// StatusOptions configures a Status sink.
type StatusOptions struct {
	// Limit bounds the JSON array text Result returns, in bytes.
	// 0 (or less) means DefaultStatusLimit; values below 2 are raised to 2
	// (the empty array "[]").
	Limit int
}

// Status keeps the latest events of a run for status.output: at most
// Limit bytes of JSON array text. Older events are dropped to make room
// and Result reports them as truncated.
//
// Stats.Dropped counts the events no longer in the array (pushed out by
// newer ones, or larger than Limit on their own).
//
// Write and Close follow Sink's contract; Result and Stats are safe to call
// concurrently with Write.
type Status struct {
	mu sync.Mutex
	// w holds the kept events, each followed by ','; guarded by mu.
	w window
	// events counts accepted events; guarded by mu.
	events int64
	// closed is set by Close; guarded by mu.
	closed bool
}

// NewStatus returns a Status sink with opts' defaults applied.
func NewStatus(opts StatusOptions) *Status {
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultStatusLimit
	}
	if limit < minStatusLimit {
		limit = minStatusLimit
	}
	// The array text is "[" + events joined by "," + "]": one byte more
	// than the events each followed by ','.
	return &Status{w: newWindow(limit-1, 0, ',')}
}

// Write keeps a copy of b, dropping the oldest events to stay within the
// limit. It returns ErrClosed after Close.
func (s *Status) Write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.events++
	s.w.add(b)
	return nil
}

// Close ends the run. It returns "", nil: the events are in Result.
func (s *Status) Close(ctx context.Context) (string, error) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return "", nil
}

// Stats returns the events written and the events no longer kept.
func (s *Status) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Events: s.events, Dropped: s.w.dropped}
}

// Result returns the kept events as a JSON array (valid JSON, newest last,
// at most Limit bytes), whether older events were dropped, and the number
// of events written so far. It is safe to call concurrently with Write and
// after Close.
func (s *Status) Result() (output string, truncated bool, events int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.w.live()
	if len(live) == 0 {
		return "[]", s.w.dropped > 0, s.events
	}
	var sb strings.Builder
	sb.Grow(len(live) + 1)
	sb.WriteByte('[')
	sb.Write(live[:len(live)-1])
	sb.WriteByte(']')
	return sb.String(), s.w.dropped > 0, s.events
}
