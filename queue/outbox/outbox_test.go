package outbox

import (
	"context"
	"errors"
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

func TestCloseDoesNotWaitForAReaderThatStopped(t *testing.T) {
	o := NewWithOptions[int](Options{Buffer: 2, Stall: 20 * time.Millisecond})
	for i := range 5 {
		o.Put(i)
	}
	closed := make(chan error, 1)
	go func() { closed <- o.Close(context.Background()) }()
	var err error
	select {
	case err = <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a reader that does not read")
	}
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "drop 3 undelivered values: the reader took no value for 20ms") {
		t.Fatalf("Close = %v", err)
	}
	for want := range 2 {
		if v, ok := <-o.C(); !ok || v != want {
			t.Fatalf("buffered value %d: got %v %v", want, v, ok)
		}
	}
	if _, ok := <-o.C(); ok {
		t.Fatal("channel open after Close")
	}
}

func TestCloseWaitsForASlowReader(t *testing.T) {
	// Each value takes the reader far less than the stall, so Close waits
	// for all of them however long the whole backlog takes.
	o := NewWithOptions[int](Options{Buffer: 1, Stall: 5 * time.Second})
	for i := range 50 {
		o.Put(i)
	}
	got := make(chan int)
	go func() {
		n := 0
		for range o.C() {
			n++
			time.Sleep(time.Millisecond)
		}
		got <- n
	}()
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 50 {
		t.Fatalf("reader got %d of 50 values", n)
	}
}

func TestCloseWithNothingWaitingReturnsAtOnce(t *testing.T) {
	// Values in the buffer are not waited for: a closed channel still
	// yields them.
	o := NewWithOptions[int](Options{Buffer: 4, Stall: time.Hour})
	o.Put(1)
	done := make(chan error, 1)
	go func() { done <- o.Close(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a buffered value to be read")
	}
	if v := <-o.C(); v != 1 {
		t.Fatalf("got %d", v)
	}
}
