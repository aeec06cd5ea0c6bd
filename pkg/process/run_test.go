package process_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/process"
)

// Run without a node name fails at once, naming the flag and the
// environment variable that set it, before it reaches the API server.
func TestRunRequiresTheNodeName(t *testing.T) {
	err := process.Run(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, process.Options{})
	if err == nil || !strings.Contains(err.Error(), "--node-name") || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Fatalf("Run without a node name: %v, want an error naming --node-name and NODE_NAME", err)
	}
}
