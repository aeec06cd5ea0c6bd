package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/manager"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// DefaultUnsubscribeTimeout is Options.UnsubscribeTimeout's default.
const DefaultUnsubscribeTimeout = 30 * time.Second

// unsubscribePoll is how often the package's status is read while waiting.
const unsubscribePoll = 250 * time.Millisecond

// unsubscribeWaiter waits, before a package's Helm release is deleted,
// until no node lists a Trace in the package's status.subscriptions. The
// nodes stop a package's Traces as soon as it is being deleted; past the
// timeout the removal goes on, and the Traces still holding the gadget are
// logged and recorded as an Event.
type unsubscribeWaiter struct {
	reader   client.Reader
	timeout  time.Duration
	recorder record.EventRecorder
	log      logr.Logger
}

var _ manager.Unsubscriber = unsubscribeWaiter{}

// WaitUnsubscribed implements manager.Unsubscriber.
func (w unsubscribeWaiter) WaitUnsubscribed(ctx context.Context, gp *v1alpha1.GadgetPackage) error {
	deadline := time.Now().Add(w.timeout)
	key := client.ObjectKeyFromObject(gp)
	for {
		var cur v1alpha1.GadgetPackage
		if err := w.reader.Get(ctx, key, &cur); err != nil {
			return client.IgnoreNotFound(err)
		}
		subs := cur.Status.Subscriptions
		if len(subs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			held := make([]string, len(subs))
			for i, s := range subs {
				held[i] = s.Trace + " on " + s.Node
			}
			msg := fmt.Sprintf("removing the package after %s although Traces still use its gadget: %s", w.timeout, strings.Join(held, ", "))
			w.log.Info(msg, "package", key.String())
			if w.recorder != nil {
				w.recorder.Event(&cur, "Warning", "TracesStillSubscribed", msg)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(unsubscribePoll):
		}
	}
}
