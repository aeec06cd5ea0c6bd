package hooks

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"

	"github.com/gadgetpm/gadgetpm/pkg/dump"
)

// OutputLine is one line a hook printed, as the dump shows it (the type
// is the dump's, so the debug server prints it without linking hooks).
type OutputLine = dump.OutputLine

// hookOutput is one hook's output state across its runs: the rate limit
// of its lines in the log and the tail of its last lines.
type hookOutput struct {
	limiter *rate.Limiter // safe for concurrent use
	max     int

	mu sync.Mutex
	// tail is a ring of the last max lines, next the slot to write once
	// it is full; guarded by mu.
	tail []OutputLine
	next int
}

func (o *hookOutput) add(l OutputLine) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) < o.max {
		o.tail = append(o.tail, l)
		return
	}
	o.tail[o.next] = l
	o.next = (o.next + 1) % o.max
}

func (o *hookOutput) lines() []OutputLine {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == 0 {
		return nil
	}
	out := make([]OutputLine, 0, len(o.tail))
	out = append(out, o.tail[o.next:]...)
	return append(out, o.tail[:o.next]...)
}

// runOutput is one run's view of its hook's output: both streams' line
// loggers hand it every line; it keeps the tail, applies the rate limit
// and counts what it dropped. Safe for concurrent use.
type runOutput struct {
	hook      *hookOutput
	log       logr.Logger
	name      string
	run       string
	perSecond float64

	dropped atomic.Int64
}

// take records line in the tail and reports whether it may be logged.
// The first dropped line of a run says so in the log, so a long flood is
// visible before the run ends.
func (r *runOutput) take(stream string, line []byte) bool {
	text := line
	if len(text) > MaxOutputTailLine {
		text = text[:MaxOutputTailLine]
	}
	r.hook.add(OutputLine{Time: time.Now().UTC(), Stream: stream, RunID: r.run, Text: string(text)})
	if r.hook.limiter.Allow() {
		return true
	}
	if r.dropped.Add(1) == 1 {
		r.log.Info(fmt.Sprintf("hook %s prints more than %s lines per second; dropping its output lines until it slows down", r.name, strconv.FormatFloat(r.perSecond, 'f', -1, 64)))
	}
	return false
}

// finish logs how many lines were dropped, if any, and returns the count.
func (r *runOutput) finish() int64 {
	n := r.dropped.Load()
	if n > 0 {
		r.log.Info(fmt.Sprintf("%d lines of hook %s's output dropped", n, r.name), "droppedLines", n)
	}
	return n
}
