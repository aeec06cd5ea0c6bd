package nelm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/gadgetpm/gadgetpm/pkg/identity"
)

// ErrServiceAccountNotFound: the ServiceAccount a package acts as does not
// exist in its namespace.
var ErrServiceAccountNotFound = identity.ErrServiceAccountNotFound

// Event reasons of an operation the package's identity cannot do.
const (
	ReasonForbidden              = identity.ReasonForbidden
	ReasonServiceAccountNotFound = identity.ReasonServiceAccountNotFound
)

// clients reach the cluster as one identity: the Service's own or a
// package's ServiceAccount. All share the Service's discovery cache and
// REST mapper: what the API serves does not depend on who asks.
type clients struct {
	access    *clusterAccess
	clientset kubernetes.Interface
	dynamic   dynamic.Interface
}

func newClients(access *clusterAccess) (*clients, error) {
	cs, err := kubernetes.NewForConfig(access.config)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(access.config)
	if err != nil {
		return nil, err
	}
	return &clients{access: access, clientset: cs, dynamic: dyn}, nil
}

// identities caches the clients of each ServiceAccount packages act as,
// and drops them when no package uses them any more.
type identities struct {
	mu sync.Mutex
	// byUser holds the clients of each impersonated user and the keys of
	// the packages using them; guarded by mu.
	byUser map[string]*identityClients
	// userOf is the user each package key last acted as; guarded by mu.
	userOf map[string]string
}

type identityClients struct {
	c    *clients
	pkgs map[string]struct{}
}

// clientsFor returns the clients pkg acts with: the Service's own when
// pkg names no ServiceAccount, else its ServiceAccount's (impersonation),
// made on first use and shared by every package acting as it.
func (s *Service) clientsFor(pkg Package) (*clients, error) {
	if pkg.ServiceAccount == "" {
		s.forgetIdentity(pkg)
		return s.own, nil
	}
	user := identity.UserName(pkg.Namespace, pkg.ServiceAccount)
	ids := &s.identities
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if was, ok := ids.userOf[pkg.Key()]; ok && was != user {
		ids.release(pkg.Key(), was)
	}
	e, ok := ids.byUser[user]
	if !ok {
		access := &clusterAccess{
			config:    identity.Impersonate(s.own.access.config, pkg.Namespace, pkg.ServiceAccount),
			discovery: s.own.access.discovery,
			mapper:    s.own.access.mapper,
		}
		c, err := newClients(access)
		if err != nil {
			return nil, fmt.Errorf("clients for %s: %w", identity.Subject(user), err)
		}
		e = &identityClients{c: c, pkgs: map[string]struct{}{}}
		ids.byUser[user] = e
	}
	e.pkgs[pkg.Key()] = struct{}{}
	ids.userOf[pkg.Key()] = user
	return e.c, nil
}

// forgetIdentity drops pkg from the cache: once no package acts as a
// ServiceAccount, its clients go.
func (s *Service) forgetIdentity(pkg Package) {
	ids := &s.identities
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if was, ok := ids.userOf[pkg.Key()]; ok {
		ids.release(pkg.Key(), was)
	}
}

// release removes key from user's packages; guarded by mu.
func (ids *identities) release(key, user string) {
	delete(ids.userOf, key)
	if e, ok := ids.byUser[user]; ok {
		delete(e.pkgs, key)
		if len(e.pkgs) == 0 {
			delete(ids.byUser, user)
		}
	}
}

// Identities lists the ServiceAccounts whose clients the Service holds
// ("system:serviceaccount:<ns>:<name>"), for tests and the dump.
func (s *Service) Identities() []string {
	ids := &s.identities
	ids.mu.Lock()
	defer ids.mu.Unlock()
	out := make([]string, 0, len(ids.byUser))
	for u := range ids.byUser {
		out = append(out, u)
	}
	return out
}

// checkServiceAccount fails with ErrServiceAccountNotFound when the
// ServiceAccount pkg acts as does not exist: impersonating it would only
// be refused, request after request, without saying why. It reads with
// the Service's own identity.
func (s *Service) checkServiceAccount(ctx context.Context, step string, pkg Package) error {
	if pkg.ServiceAccount == "" {
		return nil
	}
	_, err := s.own.clientset.CoreV1().ServiceAccounts(pkg.Namespace).Get(ctx, pkg.ServiceAccount, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s release %s: %w: %s/%s, which the package acts as (spec.serviceAccountName, or the operator's --default-service-account when the field is empty), does not exist; create it with the rights the chart needs or name another",
			step, pkg, ErrServiceAccountNotFound, pkg.Namespace, pkg.ServiceAccount)
	case err != nil:
		return fmt.Errorf("%s release %s: read service account %s/%s: %w", step, pkg, pkg.Namespace, pkg.ServiceAccount, err)
	}
	return nil
}

// forbidden rewrites an error whose cause is a refusal of the package's
// identity so that its message says what was refused to whom and what to
// do; other errors are returned as they are.
func forbidden(step string, pkg Package, err error) error {
	fe, ok := identity.AsForbidden(err)
	if !ok {
		return err
	}
	return fmt.Errorf("%s release %s: %w; grant it that right (a Role and RoleBinding) or change the chart", step, pkg, fe)
}

// failureReason is the Event reason of a failed operation.
func failureReason(err error) string {
	switch {
	case errors.Is(err, ErrRemediationFailed):
		return ReasonRemediationFailed
	case errors.Is(err, ErrNotOwned):
		return ReasonRefused
	case errors.Is(err, ErrNotReady):
		return ReasonNotReady
	}
	if r := identity.Reason(err); r != "" {
		return r
	}
	return ReasonFailed
}
