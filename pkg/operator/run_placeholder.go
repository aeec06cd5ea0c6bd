package operator

import (
	"context"

	"k8s.io/client-go/rest"
)

// Run runs the operator until ctx ends.
//
// This placeholder only waits for ctx; the coordinator's run.go replaces it
// (delete this file when merging).
func Run(ctx context.Context, cfg *rest.Config, opts RunOptions) error {
	_, _ = cfg, opts
	<-ctx.Done()
	return nil
}
