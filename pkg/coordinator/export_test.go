package coordinator

import (
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/pkg/dump"
)

// NewUnsubscribeWaiter exposes the coordinator's wait for the nodes to
// stop a package's Traces to the tests.
func NewUnsubscribeWaiter(reader client.Reader, timeout time.Duration, recorder record.EventRecorder) manager.Unsubscriber {
	return unsubscribeWaiter{reader: reader, timeout: timeout, recorder: recorder, log: logr.Discard()}
}

// HookDump lets the package's tests name the dump's hook entries as the
// coordinator's own.
type HookDump = dump.Hook

// PendingKubeEvents is how many kube events wait, compacted, in hook runs
// that have not started, and how many the event monitors still hold.
func (c *Coordinator) PendingKubeEvents() (inRuns, undelivered int) {
	return c.hooks.PendingKubeEvents(), c.events.Pending()
}
