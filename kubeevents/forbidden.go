package kubeevents

import (
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// ForbiddenError is a list or watch of a monitor that the API server
// refused to the monitor's identity. Monitors.Forbidden returns it while
// the refusal lasts; the monitor keeps retrying, so granting the right
// heals it.
type ForbiddenError struct {
	// Verb is "list" or "watch".
	Verb string
	// Resource is the refused resource ("configmaps", "deployments.apps").
	Resource string
	// Namespace is the refused namespace; empty for all namespaces or a
	// cluster-scoped resource (ClusterScoped).
	Namespace     string
	ClusterScoped bool
	// ServiceAccount is the monitor's identity; nil: the operator's.
	ServiceAccount *ServiceAccount
	// Err is the API server's answer.
	Err error
}

// Error says "<verb> <resource> in namespace <ns>: forbidden for service
// account <ns>/<name>".
func (e *ForbiddenError) Error() string {
	where := " in namespace " + e.Namespace
	switch {
	case e.ClusterScoped:
		where = " (cluster-scoped)"
	case e.Namespace == "":
		where = " in all namespaces"
	}
	who := "the operator"
	if e.ServiceAccount != nil {
		who = "service account " + e.ServiceAccount.String()
	}
	return fmt.Sprintf("%s %s%s: forbidden for %s", e.Verb, e.Resource, where, who)
}

func (e *ForbiddenError) Unwrap() error { return e.Err }

// access is what a source's list and watch reach, for ForbiddenError.
type access struct {
	// key identifies the source: its namespace, or "namespaces" for the
	// namespace watch of a namespace label selector.
	key           string
	resource      string
	namespace     string
	clusterScoped bool
}

// observe records the outcome of a list or watch (verb) of a: a
// Forbidden answer becomes a refusal of the monitor (logged when it
// starts), a success of the same verb ends it (logged too). The
// reflector's first request, a watch asking for the initial events
// (watch-list), counts as a watch.
func (mon *monitor) observe(verb string, a access, err error) {
	if err != nil && !apierrors.IsForbidden(err) {
		return
	}
	key := a.key + " " + verb
	mon.mu.Lock()
	if !mon.active {
		mon.mu.Unlock()
		return
	}
	old := mon.refused[key]
	if err == nil {
		delete(mon.refused, key)
	} else {
		mon.refused[key] = &ForbiddenError{Verb: verb, Resource: a.resource, Namespace: a.namespace, ClusterScoped: a.clusterScoped,
			ServiceAccount: mon.cfg.ServiceAccount, Err: err}
	}
	now := mon.refused[key]
	mon.mu.Unlock()
	switch {
	case now != nil && old == nil:
		mon.log.Error(now, "the API server refused the binding's "+verb+"; retrying with backoff", "resource", a.resource, "namespace", a.namespace)
	case now == nil && old != nil:
		mon.log.Info("the binding's "+verb+" is allowed now", "resource", a.resource, "namespace", a.namespace)
	}
}

// forbidden returns the refusal first in order (by source, then list
// before watch), or nil.
func (mon *monitor) forbidden() *ForbiddenError {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	keys := make([]string, 0, len(mon.refused))
	for k := range mon.refused {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	return mon.refused[keys[0]]
}

// identityClient is the dynamic client of one service account, shared by
// the monitors that act as it.
type identityClient struct {
	dynamic dynamic.Interface
	users   int
}

// clientFor returns the dynamic client monitors acting as sa use (the
// operator's own for nil), counting one more user of it.
func (m *Monitors) clientFor(sa *ServiceAccount) (dynamic.Interface, error) {
	if sa == nil {
		return m.dynamic, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.identities[*sa]; c != nil {
		c.users++
		return c.dynamic, nil
	}
	cfg := rest.CopyConfig(m.opts.Config)
	cfg.QPS, cfg.Burst = m.opts.QPS, m.opts.Burst
	// The API server adds the account's groups (system:serviceaccounts,
	// system:serviceaccounts:<namespace>) to an impersonated account.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: sa.User()}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for service account %s: %w", sa, err)
	}
	m.identities[*sa] = &identityClient{dynamic: dyn, users: 1}
	return dyn, nil
}

// releaseClient drops a user of sa's client, and the client with its
// last user.
func (m *Monitors) releaseClient(sa *ServiceAccount) {
	if sa == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.identities[*sa]; c != nil {
		if c.users--; c.users <= 0 {
			delete(m.identities, *sa)
		}
	}
}
