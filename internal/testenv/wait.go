package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// PackageTimeout bounds WaitPackage: a package's install, hooks and Helm
// release on a loaded machine.
const PackageTimeout = 90 * time.Second

// WaitPackage polls the GadgetPackage ns/name until cond holds and
// returns it. It fails t after PackageTimeout with the last status seen,
// and at once on an API error other than NotFound (the package may not
// exist yet).
func (e *Env) WaitPackage(t testing.TB, ns, name, what string, cond func(*v1alpha1.GadgetPackage) bool) *v1alpha1.GadgetPackage {
	t.Helper()
	return eventually.Value(t, PackageTimeout, fmt.Sprintf("%s/%s to be %s", ns, name, what), func() (*v1alpha1.GadgetPackage, error) {
		var gp v1alpha1.GadgetPackage
		err := e.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &gp)
		if err == nil && cond(&gp) {
			return &gp, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return nil, fmt.Errorf("status %+v (err %v)", gp.Status, err)
	})
}

// EventMatch selects Kubernetes Events for WaitEvent; an empty field
// matches any value.
type EventMatch struct {
	// Namespace the Events are in. Required.
	Namespace string
	// Kind and Name of the involved object.
	Kind, Name string
	// Type is Normal or Warning.
	Type string
	// Reason of the Event.
	Reason string
	// Parts must each be in the message.
	Parts []string
}

func (m EventMatch) String() string {
	s := "an Event"
	if m.Type != "" {
		s = "a " + m.Type + " Event"
	}
	if m.Reason != "" {
		s += " " + m.Reason
	}
	on := m.Namespace + "/" + m.Name
	if m.Kind != "" {
		on = m.Kind + " " + on
	}
	return fmt.Sprintf("%s on %s saying %q", s, on, m.Parts)
}

func (m EventMatch) matches(ev *corev1.Event) bool {
	if (m.Kind != "" && ev.InvolvedObject.Kind != m.Kind) || (m.Name != "" && ev.InvolvedObject.Name != m.Name) ||
		(m.Type != "" && ev.Type != m.Type) || (m.Reason != "" && ev.Reason != m.Reason) {
		return false
	}
	for _, p := range m.Parts {
		if !strings.Contains(ev.Message, p) {
			return false
		}
	}
	return true
}

// WaitEvent polls the Events of m.Namespace until one matches m and
// returns it; after timeout it fails t listing the Events seen.
func (e *Env) WaitEvent(t testing.TB, timeout time.Duration, m EventMatch) corev1.Event {
	t.Helper()
	return eventually.Value(t, timeout, m.String(), func() (corev1.Event, error) {
		var list corev1.EventList
		if err := e.Client.List(context.Background(), &list, client.InNamespace(m.Namespace)); err != nil {
			return corev1.Event{}, err
		}
		var seen []string
		for i := range list.Items {
			ev := &list.Items[i]
			if m.matches(ev) {
				return *ev, nil
			}
			seen = append(seen, fmt.Sprintf("%s %s/%s %s %s: %s", ev.InvolvedObject.Kind, ev.InvolvedObject.Namespace, ev.InvolvedObject.Name, ev.Type, ev.Reason, ev.Message))
		}
		return corev1.Event{}, fmt.Errorf("Events: %q", seen)
	})
}
