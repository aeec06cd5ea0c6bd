package queue

// fifo is a queue's pending tasks, oldest first. Popping moves a head
// index instead of reslicing, so a queue that is drained as fast as it is
// filled reuses one backing array instead of allocating on every push.
type fifo struct {
	buf  []*item
	head int // buf[:head] is spent
}

func (f *fifo) len() int       { return len(f.buf) - f.head }
func (f *fifo) items() []*item { return f.buf[f.head:] }
func (f *fifo) front() *item   { return f.buf[f.head] }
func (f *fifo) at(i int) *item { return f.buf[f.head+i] }

func (f *fifo) push(it *item) {
	if f.head > 0 && len(f.buf) == cap(f.buf) {
		n := copy(f.buf, f.buf[f.head:])
		clear(f.buf[n:])
		f.buf, f.head = f.buf[:n], 0
	}
	f.buf = append(f.buf, it)
}

func (f *fifo) pop() *item {
	it := f.buf[f.head]
	f.buf[f.head] = nil
	f.head++
	if f.head == len(f.buf) {
		f.buf, f.head = f.buf[:0], 0
	}
	return it
}

// pushFront puts a task back at the head (a retry).
func (f *fifo) pushFront(it *item) {
	if f.head > 0 {
		f.head--
		f.buf[f.head] = it
		return
	}
	f.buf = append(f.buf, nil)
	copy(f.buf[1:], f.buf)
	f.buf[0] = it
}

// replaceFront replaces the head with it and removes the drop tasks
// behind it (compaction).
func (f *fifo) replaceFront(it *item, drop int) {
	items := f.items()
	items[0] = it
	n := copy(items[1:], items[1+drop:])
	clear(items[1+n:])
	f.buf = f.buf[:f.head+1+n]
}

// takeAll empties the fifo and returns what it held.
func (f *fifo) takeAll() []*item {
	out := f.items()
	f.buf, f.head = nil, 0
	return out
}
