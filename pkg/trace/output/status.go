package output

import (
	"context"
	"strings"
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
	// k holds the kept events, each followed by ','.
	k bounded
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
	return &Status{k: bounded{w: newWindow(limit-1, 0, ',')}}
}

// Write keeps a copy of b, dropping the oldest events to stay within the
// limit. It returns ErrClosed after Close.
func (s *Status) Write(b []byte) error { return s.k.write(b) }

// Close ends the run. It returns "", nil: the events are in Result.
func (s *Status) Close(ctx context.Context) (string, error) {
	s.k.mu.Lock()
	s.k.closed = true
	s.k.mu.Unlock()
	return "", nil
}

// Stats returns the events written and the events no longer kept.
func (s *Status) Stats() Stats { return s.k.stats() }

// Result returns the kept events as a JSON array (valid JSON, newest last,
// at most Limit bytes), whether older events were dropped, and the number
// of events written so far. It is safe to call concurrently with Write and
// after Close.
func (s *Status) Result() (output string, truncated bool, events int64) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	live, truncated, events := s.k.w.live(), s.k.w.dropped > 0, s.k.events
	if len(live) == 0 {
		return "[]", truncated, events
	}
	var sb strings.Builder
	sb.Grow(len(live) + 1)
	sb.WriteByte('[')
	sb.Write(live[:len(live)-1])
	sb.WriteByte(']')
	return sb.String(), truncated, events
}
