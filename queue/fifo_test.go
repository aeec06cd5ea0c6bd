package queue

import (
	"strings"
	"testing"
)

func TestFIFO(t *testing.T) {
	names := func(f *fifo) string {
		var out []string
		for _, it := range f.items() {
			out = append(out, it.name)
		}
		return strings.Join(out, ",")
	}
	it := func(n string) *item { return &item{name: n} }
	tests := []struct {
		name string
		ops  func(f *fifo)
		want string
	}{
		{"push keeps order", func(f *fifo) { f.push(it("a")); f.push(it("b")); f.push(it("c")) }, "a,b,c"},
		{"pop takes the oldest", func(f *fifo) {
			f.push(it("a"))
			f.push(it("b"))
			if got := f.pop().name; got != "a" {
				t.Errorf("pop = %s", got)
			}
		}, "b"},
		{"pushFront after a pop reuses the slot", func(f *fifo) {
			f.push(it("a"))
			f.push(it("b"))
			f.pop()
			f.pushFront(it("r"))
		}, "r,b"},
		{"pushFront on a fresh fifo", func(f *fifo) { f.push(it("a")); f.pushFront(it("r")) }, "r,a"},
		{"push after pops compacts instead of growing", func(f *fifo) {
			for i := range 8 {
				f.push(it(string(rune('a' + i))))
			}
			c := cap(f.buf)
			for range 6 {
				f.pop()
			}
			for range c - 2 {
				f.push(it("x"))
			}
			if cap(f.buf) != c {
				t.Errorf("cap grew from %d to %d", c, cap(f.buf))
			}
			for f.len() > 2 {
				f.pop()
			}
		}, "x,x"},
		{"replaceFront drops the merged tasks", func(f *fifo) {
			for _, n := range []string{"a", "b", "c", "d"} {
				f.push(it(n))
			}
			f.pop()
			f.replaceFront(it("b+c"), 1)
		}, "b+c,d"},
		{"takeAll empties", func(f *fifo) {
			f.push(it("a"))
			f.push(it("b"))
			if got := len(f.takeAll()); got != 2 {
				t.Errorf("takeAll returned %d", got)
			}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f fifo
			tt.ops(&f)
			if got := names(&f); got != tt.want {
				t.Fatalf("items %q, want %q", got, tt.want)
			}
			if f.len() != len(f.items()) {
				t.Fatalf("len %d, items %d", f.len(), len(f.items()))
			}
		})
	}
}
