package nelm

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
)

func TestKeyedLock(t *testing.T) {
	l := keyedLock{held: map[string]chan struct{}{}}
	ctx := context.Background()

	unlockA, err := l.lock(ctx, "ns.a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is independent.
	unlockB, err := l.lock(ctx, "ns.b")
	if err != nil {
		t.Fatalf("lock of another key blocked: %v", err)
	}
	unlockB()

	// The same key waits, and gives up with the context.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.lock(short, "ns.a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock of a held key = %v, want DeadlineExceeded", err)
	}

	got := make(chan struct{})
	go func() {
		unlock, err := l.lock(ctx, "ns.a")
		if err == nil {
			unlock()
		}
		close(got)
	}()
	unlockA()
	<-got
	if len(l.held) != 0 {
		t.Fatalf("keys left held: %v", l.held)
	}
}

func TestSameValues(t *testing.T) {
	tests := []struct {
		name          string
		stored, given map[string]any
		want          bool
	}{
		{name: "nil and empty", stored: nil, given: map[string]any{}, want: true},
		{name: "int read back as float", stored: map[string]any{"n": 3.0}, given: map[string]any{"n": 3}, want: true},
		{name: "nested order", stored: map[string]any{"m": map[string]any{"a": 1.0, "b": "x"}}, given: map[string]any{"m": map[string]any{"b": "x", "a": 1}}, want: true},
		{name: "changed leaf", stored: map[string]any{"n": 3.0}, given: map[string]any{"n": 4}, want: false},
		{name: "added key", stored: map[string]any{}, given: map[string]any{"n": nil}, want: false},
		{name: "list order matters", stored: map[string]any{"l": []any{"a", "b"}}, given: map[string]any{"l": []any{"b", "a"}}, want: false},
		{name: "unencodable", stored: map[string]any{}, given: map[string]any{"f": func() {}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameValues(tt.stored, tt.given); got != tt.want {
				t.Fatalf("sameValues = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCopyValuesIsDeep(t *testing.T) {
	orig := map[string]any{"m": map[string]any{"k": "v"}, "l": []any{map[string]any{"x": 1}}}
	c := copyValues(orig)
	c["m"].(map[string]any)["k"] = "changed"
	c["l"].([]any)[0].(map[string]any)["x"] = 2
	if orig["m"].(map[string]any)["k"] != "v" || orig["l"].([]any)[0].(map[string]any)["x"] != 1 {
		t.Fatalf("copy shares state with the original: %v", orig)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	tests := []struct {
		opts Options
		want string
	}{
		{Options{QPS: -1}, "Options.QPS"},
		{Options{Burst: -1}, "Options.Burst"},
		{Options{MaxHistory: -2}, "Options.MaxHistory"},
		{Options{Timeout: -time.Second}, "Options.Timeout"},
		{Options{MonitorInterval: -time.Minute}, "Options.MonitorInterval"},
		{Options{MonitorJitter: 2}, "Options.MonitorJitter"},
		{Options{DriftBuffer: -1}, "Options.DriftBuffer"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := New(cfg, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error naming %s", err, tt.want)
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	if s.opts.MaxHistory != 5 || s.opts.Timeout != 5*time.Minute || s.opts.MonitorInterval != 4*time.Minute {
		t.Fatalf("defaults = %+v", s.opts)
	}
}

// TestHelmGetsTheSharedDiscovery: every Helm operation of a Service maps
// kinds and discovers the API through Options.Discovery, the process's
// one cache, rather than a cache of its own.
func TestHelmGetsTheSharedDiscovery(t *testing.T) {
	// Nothing listens here: neither New nor the getter may contact it.
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	shared, err := restmapping.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Discovery: shared})
	if err != nil {
		t.Fatal(err)
	}
	g := &RESTClientGetter{access: s.own.access, namespace: "ns"}
	if m, err := g.ToRESTMapper(); err != nil || m != meta.RESTMapper(shared) {
		t.Errorf("ToRESTMapper() = %T %p, %v; want the shared mapper %p", m, m, err, shared)
	}
	if d, err := g.ToDiscoveryClient(); err != nil || d != shared.Discovery() {
		t.Errorf("ToDiscoveryClient() = %p, %v; want the shared discovery client %p", d, err, shared.Discovery())
	}
}
