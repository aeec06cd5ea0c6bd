package output

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestStatusBound(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limit   int
		want    int // effective limit
		maxSize int
		events  int
	}{
		{"default limit", 0, DefaultStatusLimit, 600, 2000},
		{"small limit", 300, 300, 90, 500},
		{"limit below the empty array", 1, 2, 50, 20},
		{"one event fits", 60, 60, 58, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStatus(StatusOptions{Limit: tc.limit})
			rng := rand.New(rand.NewPCG(3, 4))
			newest := -1
			for i := range tc.events {
				ev := event(i, 40+rng.IntN(tc.maxSize-39))
				if err := s.Write(ev); err != nil {
					t.Fatal(err)
				}
				if len(ev)+2 <= tc.want {
					newest = i
				}
				out, truncated, events := s.Result()
				if len(out) > tc.want {
					t.Fatalf("after event %d: output has %d bytes, limit %d", i, len(out), tc.want)
				}
				var arr []struct{ Seq int }
				if err := json.Unmarshal([]byte(out), &arr); err != nil {
					t.Fatalf("after event %d: output is not a JSON array: %v\n%s", i, err, out)
				}
				if events != int64(i+1) {
					t.Fatalf("after event %d: events %d, want %d", i, events, i+1)
				}
				if newest >= 0 && (len(arr) == 0 || arr[len(arr)-1].Seq != newest) {
					t.Fatalf("after event %d: newest kept event is not last: %s", i, out)
				}
				for k := 1; k < len(arr); k++ {
					if arr[k].Seq <= arr[k-1].Seq {
						t.Fatalf("after event %d: events out of order: %s", i, out)
					}
				}
				st := s.Stats()
				if st.Events != int64(i+1) || st.Dropped != int64(i+1-len(arr)) {
					t.Fatalf("after event %d: stats %+v with %d kept", i, st, len(arr))
				}
				if truncated != (st.Dropped > 0) {
					t.Fatalf("after event %d: truncated %v with %d dropped", i, truncated, st.Dropped)
				}
			}
		})
	}
}

func TestStatusKeepsNewestWithinLimit(t *testing.T) {
	// Ten 100-byte events in a 350-byte array: "[" + 3*100 + 2 commas +
	// "]" = 304 bytes; a fourth would need 405.
	s := NewStatus(StatusOptions{Limit: 350})
	for i := range 10 {
		if err := s.Write(event(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	out, truncated, events := s.Result()
	want := "[" + string(event(7, 100)) + "," + string(event(8, 100)) + "," + string(event(9, 100)) + "]"
	if out != want || !truncated || events != 10 {
		t.Fatalf("Result() = %q, %v, %d; want %q, true, 10", out, truncated, events, want)
	}
	if st := s.Stats(); st != (Stats{Events: 10, Dropped: 7}) {
		t.Fatalf("Stats() = %+v, want 10 events, 7 dropped", st)
	}
}

func TestStatusEmptyAndClosed(t *testing.T) {
	s := NewStatus(StatusOptions{})
	if out, truncated, events := s.Result(); out != "[]" || truncated || events != 0 {
		t.Fatalf("empty Result() = %q, %v, %d; want [], false, 0", out, truncated, events)
	}
	if err := s.Write([]byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if ref, err := s.Close(context.Background()); ref != "" || err != nil {
			t.Fatalf("Close() = %q, %v; want \"\", nil", ref, err)
		}
	}
	if err := s.Write([]byte(`{"a":2}`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	if out, _, events := s.Result(); out != `[{"a":1}]` || events != 1 {
		t.Fatalf("Result() after Close = %q, %d; want the one event", out, events)
	}
}

func TestStatusDoesNotKeepCallersSlice(t *testing.T) {
	s := NewStatus(StatusOptions{})
	buf := []byte(`{"a":1}`)
	if err := s.Write(buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, `{"b":2}`)
	if out, _, _ := s.Result(); out != `[{"a":1}]` {
		t.Fatalf("Result() = %q after the caller reused its slice", out)
	}
}

// TestStatusResultDuringWrite calls Result from other goroutines while
// events are written; run with -race.
func TestStatusResultDuringWrite(t *testing.T) {
	s := NewStatus(StatusOptions{Limit: 4096})
	const n = 20000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, _, _ := s.Result()
				if len(out) > 4096 || !json.Valid([]byte(out)) {
					errs <- errors.New("invalid or oversized output: " + out)
					return
				}
				_ = s.Stats()
			}
		})
	}
	buf := make([]byte, 0, 256)
	for i := range n {
		buf = append(buf[:0], event(i, 50+i%150)...)
		if err := s.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, truncated, events := s.Result(); !truncated || events != n {
		t.Fatalf("after %d events: truncated %v, events %d", n, truncated, events)
	}
}
