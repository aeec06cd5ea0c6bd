package process_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/process"
)

// A hook token expiry below the TokenRequest API's minimum fails Run at
// once, naming the flag, before it reaches the API server.
func TestRunRefusesAShortHookTokenExpiry(t *testing.T) {
	err := process.Run(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, process.Options{
		NodeName: "n", DataDir: t.TempDir(), HookServiceAccount: "gadgetpm-hooks", HookTokenExpiry: 5 * time.Minute,
	})
	if err == nil || !strings.Contains(err.Error(), "--hook-token-expiry") || !strings.Contains(err.Error(), "10m0s") {
		t.Fatalf("Run with a 5m hook token expiry: %v, want an error naming --hook-token-expiry and the 10m minimum", err)
	}
}

// The hooks' service account lives in the operator's namespace: the
// downward API's POD_NAMESPACE, else (out of cluster) "default".
func TestNamespace(t *testing.T) {
	for _, tc := range []struct{ env, want string }{{"gadget-system", "gadget-system"}, {"", "default"}} {
		t.Setenv("POD_NAMESPACE", tc.env)
		if got := process.Namespace(); got != tc.want {
			t.Errorf("POD_NAMESPACE=%q: Namespace() = %q, want %q", tc.env, got, tc.want)
		}
	}
}
