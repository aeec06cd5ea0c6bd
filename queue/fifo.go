package queue

import (
	"math/bits"
	"sync"
)

// fifo is a queue's pending tasks, oldest first, held by value in a ring
// buffer: a queue drained as fast as it is filled reuses one array and
// allocates nothing per task. Pointers returned by at and front are valid
// only until the next push, pushFront or replaceFront.
type fifo struct {
	buf  []item  // len(buf) is zero or a power of two
	bufp *[]item // holds buf, to give it back to pool without allocating
	head int     // index of the oldest task in buf
	n    int     // number of tasks
	pool *ringPool
}

// minRing is the first ring size; an empty ring larger than keepRing is
// dropped by shrink so that an idle queue holds little memory.
const (
	minRing  = 16
	keepRing = 64
)

func (f *fifo) len() int { return f.n }

// at returns the i-th pending task, 0 being the oldest.
func (f *fifo) at(i int) *item { return &f.buf[(f.head+i)&(len(f.buf)-1)] }

func (f *fifo) front() *item { return f.at(0) }

func (f *fifo) grow() {
	bufp := f.pool.get(max(minRing, 2*len(f.buf)))
	buf := *bufp
	for i := range f.n {
		buf[i] = *f.at(i)
	}
	if f.bufp != nil {
		clear(f.buf)
		f.pool.put(f.bufp)
	}
	f.buf, f.bufp, f.head = buf, bufp, 0
}

// push copies *it to the tail.
func (f *fifo) push(it *item) {
	if f.n == len(f.buf) {
		f.grow()
	}
	*f.at(f.n) = *it
	f.n++
}

// pushFront copies *it to the head (a retry).
func (f *fifo) pushFront(it *item) {
	if f.n == len(f.buf) {
		f.grow()
	}
	f.head = (f.head - 1) & (len(f.buf) - 1)
	f.n++
	*f.at(0) = *it
}

// popInto moves the head into *dst and clears its slot, so the ring keeps
// no reference to the task.
func (f *fifo) popInto(dst *item) {
	p := f.at(0)
	*dst = *p
	*p = item{}
	f.head = (f.head + 1) & (len(f.buf) - 1)
	f.n--
}

// replaceFront replaces the head with *it and removes the drop tasks right
// behind it (compaction).
func (f *fifo) replaceFront(it *item, drop int) {
	*f.at(drop) = *it
	for i := range drop {
		*f.at(i) = item{}
	}
	f.head = (f.head + drop) & (len(f.buf) - 1)
	f.n -= drop
}

// takeAll empties the fifo and returns what it held, oldest first.
func (f *fifo) takeAll() []item {
	out := make([]item, f.n)
	for i := range f.n {
		out[i] = *f.at(i)
	}
	f.buf, f.bufp, f.head, f.n = nil, nil, 0, 0
	return out
}

// shrink gives the array of an empty ring that grew past keepRing back to
// the pool. Every slot of an empty ring is already clear.
func (f *fifo) shrink() {
	if f.n == 0 && len(f.buf) > keepRing {
		f.pool.put(f.bufp)
		f.buf, f.bufp, f.head = nil, nil, 0
	}
}

// ringPool keeps spare ring arrays by size for a Service's queues: a queue
// that goes idle gives its large ring back, and the next burst, in any
// queue, reuses it instead of allocating. Its arrays are all clear. A nil
// ringPool allocates every time.
type ringPool struct {
	bySize [24]sync.Pool // bySize[i] holds *[]item of minRing<<i items
}

func (p *ringPool) class(size int) int { return bits.Len(uint(size/minRing)) - 1 }

func (p *ringPool) get(size int) *[]item {
	if p != nil {
		if c := p.class(size); c < len(p.bySize) {
			if bufp, ok := p.bySize[c].Get().(*[]item); ok {
				return bufp
			}
		}
	}
	buf := make([]item, size)
	return &buf
}

func (p *ringPool) put(bufp *[]item) {
	if p == nil || bufp == nil {
		return
	}
	if c := p.class(len(*bufp)); c < len(p.bySize) {
		p.bySize[c].Put(bufp)
	}
}
