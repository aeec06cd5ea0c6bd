package output

import "sync"

// window keeps the latest events in one byte arena, each followed by a
// separator byte, within a byte limit and optionally a count limit. Adding
// an event drops the oldest ones until it fits; an event that cannot fit on
// its own is dropped. At steady state it allocates nothing: the arena is
// compacted in place once its dead prefix outgrows the live part.
//
// window is not safe for concurrent use; its owner locks around it.
type window struct {
	// maxBytes bounds len(buf)-start: the live events with their
	// separators.
	maxBytes int
	// maxEvents bounds len(ends)-head; 0 means no bound.
	maxEvents int
	sep       byte

	// buf[start:] holds the live events, oldest first, each followed by
	// sep. ends[head:] are the offsets in buf just past each live event's
	// separator, so the first live event is buf[start:ends[head]].
	buf   []byte
	start int
	ends  []int
	head  int

	// dropped counts events added but no longer (or never) held.
	dropped int64
}

func newWindow(maxBytes, maxEvents int, sep byte) window {
	return window{maxBytes: maxBytes, maxEvents: maxEvents, sep: sep}
}

// add copies b into the window and reports whether it was kept.
func (w *window) add(b []byte) bool {
	n := len(b) + 1
	if n > w.maxBytes {
		w.dropped++
		return false
	}
	for len(w.buf)-w.start+n > w.maxBytes || (w.maxEvents > 0 && len(w.ends)-w.head >= w.maxEvents) {
		w.start = w.ends[w.head]
		w.head++
		w.dropped++
	}
	if w.head == len(w.ends) {
		// Empty: restart at the beginning of the arena.
		w.buf, w.ends, w.start, w.head = w.buf[:0], w.ends[:0], 0, 0
	} else if w.start > len(w.buf)-w.start || w.head > len(w.ends)-w.head {
		w.compact()
	}
	w.buf = append(w.buf, b...)
	w.buf = append(w.buf, w.sep)
	w.ends = append(w.ends, len(w.buf))
	return true
}

// compact moves the live events to the front of the arena.
func (w *window) compact() {
	live := copy(w.buf, w.buf[w.start:])
	w.buf = w.buf[:live]
	k := copy(w.ends, w.ends[w.head:])
	w.ends = w.ends[:k]
	for i := range w.ends {
		w.ends[i] -= w.start
	}
	w.start, w.head = 0, 0
}

// live returns the live events, each followed by sep. The slice aliases the
// arena: copy it before the next add.
func (w *window) live() []byte { return w.buf[w.start:] }

// len is the number of live events.
func (w *window) len() int { return len(w.ends) - w.head }

// bounded is a window behind a lock with the sink bookkeeping Status and
// ConfigMap share: events counted, writes refused after close.
type bounded struct {
	mu sync.Mutex
	// w holds the kept events; guarded by mu.
	w window
	// events counts accepted events; guarded by mu.
	events int64
	// closed refuses later writes; guarded by mu.
	closed bool
}

// write keeps a copy of b; ErrClosed after close.
func (k *bounded) write(b []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	k.events++
	k.w.add(b)
	return nil
}

// stats returns the events written and the events no longer kept.
func (k *bounded) stats() Stats {
	k.mu.Lock()
	defer k.mu.Unlock()
	return Stats{Events: k.events, Dropped: k.w.dropped}
}
