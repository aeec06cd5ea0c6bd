package output

import (
	"context"
	"errors"
)

// Sink receives one run's events. Write is called from one goroutine at a
// time per Sink (the caller serialises), but Close may race with nothing:
// the caller calls Close once after the last Write.
type Sink interface {
	// Write takes one event, a JSON object without newline. It must not
	// keep b. An error ends the run (the caller records it).
	Write(b []byte) error
	// Close ends the run and returns a reference to where the events are
	// (ConfigMap name, file path, stream path), "" for Status. It must be
	// safe to call once; later calls return the same result.
	Close(ctx context.Context) (ref string, err error)
	// Stats counts events accepted and events dropped by this sink
	// (bounded buffers, slow readers). It is safe to call concurrently
	// with Write.
	Stats() Stats
}

// Stats counts a sink's events.
type Stats struct {
	// Events is the number of events the sink accepted through Write.
	Events int64
	// Dropped is the number of events the sink accepted but no longer
	// holds or could not deliver; each sink's doc says what it drops.
	Dropped int64
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("output closed")

// Compile-time checks that every sink implements Sink.
var (
	_ Sink = (*Status)(nil)
	_ Sink = (*ConfigMap)(nil)
	_ Sink = (*File)(nil)
	_ Sink = (*hubSink)(nil)
)
