package outbox

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOrderAndNeverBlocking(t *testing.T) {
	o := New[int](2)
	// Nobody reads yet: Put must still return at once for many values.
	done := make(chan struct{})
	go func() {
		for i := range 1000 {
			o.Put(i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Put blocked on a reader that does not read")
	}
	for i := range 1000 {
		if got := <-o.C(); got != i {
			t.Fatalf("value %d arrived as number %d", got, i)
		}
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-o.C(); ok {
		t.Fatal("channel open after Close")
	}
}

func TestConcurrentWritersKeepTheirOwnOrder(t *testing.T) {
	o := New[[2]int](1)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				o.Put([2]int{w, i})
				if i%50 == 0 {
					time.Sleep(time.Microsecond)
				}
			}
		})
	}
	next := make([]int, 4)
	for range 2000 {
		v := <-o.C()
		if v[1] != next[v[0]] {
			t.Fatalf("writer %d: got %d, want %d", v[0], v[1], next[v[0]])
		}
		next[v[0]]++
	}
	wg.Wait()
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCloseDeliversBacklogUntilCtxEnds(t *testing.T) {
	o := New[int](1)
	for i := range 5 {
		o.Put(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	// One value fits the buffer; the rest cannot be delivered in time.
	err := o.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "drop 4 undelivered values") {
		t.Fatalf("Close = %v", err)
	}
	if v, ok := <-o.C(); !ok || v != 0 {
		t.Fatalf("buffered value lost: %v %v", v, ok)
	}
	if _, ok := <-o.C(); ok {
		t.Fatal("channel open after Close")
	}
	o.Put(9) // after Close: dropped, no panic
	if err2 := o.Close(context.Background()); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second Close = %v", err2)
	}
}

func TestCloseWaitsForReader(t *testing.T) {
	o := New[int](1)
	for i := range 3 {
		o.Put(i)
	}
	var got []int
	read := make(chan struct{})
	go func() {
		for v := range o.C() {
			got = append(got, v)
		}
		close(read)
	}()
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-read
	if len(got) != 3 {
		t.Fatalf("got %v", got)
	}
}
