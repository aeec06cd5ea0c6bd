package queue

import (
	"fmt"
	"strings"
	"testing"
)

func TestFIFO(t *testing.T) {
	names := func(f *fifo) string {
		var out []string
		for i := range f.len() {
			out = append(out, f.at(i).name)
		}
		return strings.Join(out, ",")
	}
	it := func(n string) *item { return &item{name: n} }
	pop := func(f *fifo) string {
		var dst item
		f.popInto(&dst)
		return dst.name
	}
	tests := []struct {
		name string
		ops  func(t *testing.T, f *fifo)
		want string
	}{
		{"push keeps order", func(_ *testing.T, f *fifo) { f.push(it("a")); f.push(it("b")); f.push(it("c")) }, "a,b,c"},
		{"pop takes the oldest", func(t *testing.T, f *fifo) {
			f.push(it("a"))
			f.push(it("b"))
			if got := pop(f); got != "a" {
				t.Errorf("pop = %s", got)
			}
		}, "b"},
		{"pushFront after a pop", func(_ *testing.T, f *fifo) {
			f.push(it("a"))
			f.push(it("b"))
			pop(f)
			f.pushFront(it("r"))
		}, "r,b"},
		{"pushFront wraps below index 0", func(_ *testing.T, f *fifo) { f.push(it("a")); f.pushFront(it("r")) }, "r,a"},
		{"pushFront on an empty fifo", func(_ *testing.T, f *fifo) { f.pushFront(it("r")) }, "r"},
		{"pushFront on a full ring grows it", func(_ *testing.T, f *fifo) {
			for i := range minRing {
				f.push(it(fmt.Sprint(i)))
			}
			for range minRing - 2 {
				pop(f)
			}
			f.pushFront(it("r"))
		}, fmt.Sprintf("r,%d,%d", minRing-2, minRing-1)},
		{"draining as fast as filling reuses the ring", func(t *testing.T, f *fifo) {
			f.push(it("x"))
			size := len(f.buf)
			for i := range 10 * minRing {
				f.push(it(fmt.Sprint(i)))
				pop(f)
			}
			if len(f.buf) != size {
				t.Errorf("ring grew from %d to %d", size, len(f.buf))
			}
		}, fmt.Sprint(10*minRing - 1)},
		{"growing keeps order across the wrap", func(_ *testing.T, f *fifo) {
			for i := range minRing {
				f.push(it(fmt.Sprint(i)))
			}
			for range minRing - 1 {
				pop(f)
			}
			for _, n := range []string{"a", "b"} {
				f.push(it(n))
			}
			for i := range minRing {
				f.push(it(fmt.Sprint("c", i)))
			}
			for f.len() > 3 {
				pop(f)
			}
		}, fmt.Sprintf("c%d,c%d,c%d", minRing-3, minRing-2, minRing-1)},
		{"pop clears the slot", func(t *testing.T, f *fifo) {
			f.push(&item{name: "a", task: task("a", nil)})
			pop(f)
			for i := range f.buf {
				if f.buf[i].task != nil {
					t.Errorf("slot %d still holds a task", i)
				}
			}
		}, ""},
		{"replaceFront drops the merged tasks", func(_ *testing.T, f *fifo) {
			for _, n := range []string{"a", "b", "c", "d"} {
				f.push(it(n))
			}
			pop(f)
			f.replaceFront(it("b+c"), 1)
		}, "b+c,d"},
		{"takeAll empties in order", func(t *testing.T, f *fifo) {
			f.push(it("a"))
			f.push(it("b"))
			got := f.takeAll()
			if len(got) != 2 || got[0].name != "a" || got[1].name != "b" {
				t.Errorf("takeAll returned %v", got)
			}
		}, ""},
		{"shrink drops a large empty ring only", func(t *testing.T, f *fifo) {
			for i := range 4 * keepRing {
				f.push(it(fmt.Sprint(i)))
			}
			f.shrink()
			if f.len() != 4*keepRing {
				t.Fatalf("shrink dropped pending tasks")
			}
			for f.len() > 0 {
				pop(f)
			}
			f.shrink()
			if f.buf != nil {
				t.Errorf("empty ring of %d kept", len(f.buf))
			}
			f.push(it("z"))
		}, "z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f fifo
			tt.ops(t, &f)
			if got := names(&f); got != tt.want {
				t.Fatalf("items %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRingPool(t *testing.T) {
	var pool ringPool
	f := fifo{pool: &pool}
	for i := range 4 * keepRing {
		f.push(&item{name: fmt.Sprint(i), task: task("t", nil)})
	}
	size := len(f.buf)
	var dst item
	for f.len() > 0 {
		f.popInto(&dst)
	}
	f.shrink()
	if f.buf != nil {
		t.Fatal("idle ring kept")
	}

	// Every ring the pool hands out — the idle one and those left behind
	// by growing — is clear: no slot keeps an ended task alive.
	for n := minRing; n <= size; n *= 2 {
		bufp := pool.get(n)
		if len(*bufp) != n {
			t.Fatalf("asked for %d slots, got %d", n, len(*bufp))
		}
		for i, it := range *bufp {
			if it.task != nil || it.name != "" {
				t.Fatalf("ring of %d: slot %d holds %q", n, i, it.name)
			}
		}
	}

	var none *ringPool // a nil pool allocates
	if bufp := none.get(minRing); len(*bufp) != minRing {
		t.Fatalf("nil pool gave %d slots", len(*bufp))
	}
	none.put(nil)
}
