package manager

import (
	"context"
	"fmt"
)

// waitUnsubscribed lets the nodes stop the package's Traces before its
// release (and the resources its gadget may rely on) is deleted.
func (t *task) waitUnsubscribed(ctx context.Context, s snapshot) error {
	u := t.m.opts.Unsubscriber
	if u == nil || s.gp == nil {
		return nil
	}
	if err := u.WaitUnsubscribed(ctx, s.gp); err != nil {
		return fmt.Errorf("wait for the nodes to stop the Traces of %s: %w", t.key, err)
	}
	return nil
}
