package output

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestWindowMatchesModel adds events of random sizes and checks after each
// add that the window holds exactly the newest events that fit, against a
// plain slice model.
func TestWindowMatchesModel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxBytes  int
		maxEvents int
		maxSize   int
	}{
		{"bytes only", 500, 0, 80},
		{"events bound", 10000, 7, 80},
		{"both bounds", 300, 5, 120},
		{"events larger than the window", 100, 0, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			w := newWindow(tc.maxBytes, tc.maxEvents, '\n')
			var model [][]byte
			var dropped int64
			for i := range 5000 {
				ev := event(i, 1+rng.IntN(tc.maxSize))
				kept := w.add(ev)
				if len(ev)+1 > tc.maxBytes {
					if kept {
						t.Fatalf("event %d of %d bytes kept in a %d-byte window", i, len(ev), tc.maxBytes)
					}
					dropped++
				} else {
					model = append(model, ev)
					size := 0
					for _, m := range model {
						size += len(m) + 1
					}
					for size > tc.maxBytes || (tc.maxEvents > 0 && len(model) > tc.maxEvents) {
						size -= len(model[0]) + 1
						model = model[1:]
						dropped++
					}
				}
				want := append(bytes.Join(model, []byte("\n")), '\n')
				if len(model) == 0 {
					want = nil
				}
				if got := w.live(); !bytes.Equal(got, want) {
					t.Fatalf("after event %d: window holds %q, want %q", i, got, want)
				}
				if w.len() != len(model) || w.dropped != dropped {
					t.Fatalf("after event %d: len %d dropped %d, want %d and %d", i, w.len(), w.dropped, len(model), dropped)
				}
				if cap(w.buf) > 4*tc.maxBytes+512 {
					t.Fatalf("arena grew to %d bytes for a %d-byte window", cap(w.buf), tc.maxBytes)
				}
			}
		})
	}
}
