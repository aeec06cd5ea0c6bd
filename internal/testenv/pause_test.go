package testenv_test

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

// TestPauseAPIServer: paused, the server leaves a request unanswered
// until the client's deadline (it does not refuse it); resumed, it
// answers again. It starts a control plane of its own, as a package whose
// tests pause the server does (OwnControlPlane), so that it never freezes
// the one a run shares.
func TestPauseAPIServer(t *testing.T) {
	env, err := testenv.Start(testenv.OwnControlPlane())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	if env.Shard != "" {
		t.Fatalf("OwnControlPlane gave shard %q: the shared control plane", env.Shard)
	}
	list := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return env.Client.List(ctx, &corev1.NamespaceList{})
	}
	if err := list(10 * time.Second); err != nil {
		t.Fatalf("before the pause: %v", err)
	}
	resume := env.PauseAPIServer(t)
	start := time.Now()
	err = list(2 * time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request to the paused server: %v, want the client's deadline exceeded", err)
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("a request to the paused server failed after %s, before its deadline: refused, not left unanswered", waited)
	}
	resume()
	resume() // twice is safe
	if err := list(30 * time.Second); err != nil {
		t.Errorf("after resume: %v", err)
	}
}
