package identity

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// Condition and Event reasons of a package whose identity cannot act.
const (
	// ReasonForbidden: the identity lacks a right the package needs.
	ReasonForbidden = "Forbidden"
	// ReasonServiceAccountNotFound: the ServiceAccount the package acts as
	// does not exist.
	ReasonServiceAccountNotFound = "ServiceAccountNotFound"
)

// ErrServiceAccountNotFound: the ServiceAccount a package acts as does not
// exist in its namespace. Services that check it wrap it.
var ErrServiceAccountNotFound = errors.New("service account not found")

// Reason is the condition reason of err when it says the package's
// identity cannot act (ReasonForbidden, ReasonServiceAccountNotFound), or
// "" for any other error.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrServiceAccountNotFound):
		return ReasonServiceAccountNotFound
	case IsForbidden(err):
		return ReasonForbidden
	}
	return ""
}

// serviceAccountPrefix starts the user name of every ServiceAccount
// ("system:serviceaccount:<namespace>:<name>").
const serviceAccountPrefix = "system:serviceaccount:"

// ServiceAccount returns the ServiceAccount pkg acts as: its
// spec.serviceAccountName, else defaultSA, in pkg's namespace. ok is false
// when both are empty: the package acts with the operator's own identity.
func ServiceAccount(pkg *v1alpha1.GadgetPackage, defaultSA string) (namespace, name string, ok bool) {
	name = pkg.Spec.ServiceAccountName
	if name == "" {
		name = defaultSA
	}
	if name == "" {
		return "", "", false
	}
	return pkg.Namespace, name, true
}

// UserName is the user name the API server gives the ServiceAccount
// namespace/name.
func UserName(namespace, name string) string {
	return serviceAccountPrefix + namespace + ":" + name
}

// Impersonate returns a copy of base whose requests act as the
// ServiceAccount namespace/name. The API server adds the account's groups
// (system:serviceaccounts, system:serviceaccounts:<namespace>) itself. base
// is not changed; its rate limits and TLS settings are kept, so clients of
// the copy share base's transport.
func Impersonate(base *rest.Config, namespace, name string) *rest.Config {
	c := rest.CopyConfig(base)
	c.Impersonate = rest.ImpersonationConfig{UserName: UserName(namespace, name)}
	return c
}

// ForbiddenError is an API request the authorizer refused.
type ForbiddenError struct {
	// Verb refused: create, get, patch, impersonate...
	Verb string
	// Resource with its API group, as kubectl names it: "configmaps",
	// "deployments.apps"; a subresource follows a slash.
	Resource string
	// Namespace of the request; empty at the cluster scope.
	Namespace string
	// User refused, as the API server names it.
	User string
	// Err is the API server's error.
	Err error
}

// Error says what was refused to whom: "create configmaps in namespace b:
// forbidden for service account a/deployer".
func (e *ForbiddenError) Error() string {
	where := "at the cluster scope"
	if e.Namespace != "" {
		where = "in namespace " + e.Namespace
	}
	return fmt.Sprintf("%s %s %s: forbidden for %s", e.Verb, e.Resource, where, Subject(e.User))
}

func (e *ForbiddenError) Unwrap() error { return e.Err }

// Subject names a user for messages: "service account <ns>/<name>" for a
// ServiceAccount, else "user <name>".
func Subject(user string) string {
	if rest, ok := strings.CutPrefix(user, serviceAccountPrefix); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			return "service account " + ns + "/" + name
		}
	}
	return "user " + user
}

// denied matches the API server's message for a request the authorizer
// refused (k8s.io/apiserver's forbiddenMessage), wherever it sits in a
// wrapped or flattened error: Helm and the object patcher join several
// errors into one string.
var denied = regexp.MustCompile(`User "([^"]*)" cannot (\S+) resource "([^"]*)" in API group "([^"]*)"(?: in the namespace "([^"]*)"| at the cluster scope)`)

// AsForbidden finds the first authorization refusal in err: a
// ForbiddenError in its chain, or the API server's message in its text.
// Other Forbidden errors (a namespace being deleted, an admission webhook's
// refusal) are not refusals of the identity's rights and give false.
func AsForbidden(err error) (*ForbiddenError, bool) {
	if err == nil {
		return nil, false
	}
	var fe *ForbiddenError
	if errors.As(err, &fe) {
		return fe, true
	}
	m := denied.FindStringSubmatch(err.Error())
	if m == nil {
		return nil, false
	}
	resource := m[3]
	if group := m[4]; group != "" {
		// "deployments/scale" in group apps is "deployments.apps/scale".
		res, sub, hasSub := strings.Cut(resource, "/")
		resource = res + "." + group
		if hasSub {
			resource += "/" + sub
		}
	}
	return &ForbiddenError{Verb: m[2], Resource: resource, Namespace: m[5], User: m[1], Err: err}, true
}

// IsForbidden reports whether err holds an authorization refusal.
func IsForbidden(err error) bool {
	_, ok := AsForbidden(err)
	return ok
}

// DescribeForbidden returns err's first authorization refusal in words
// ("create configmaps in namespace b: forbidden for service account
// a/deployer"), or err's own message when it holds none.
func DescribeForbidden(err error) string {
	if fe, ok := AsForbidden(err); ok {
		return fe.Error()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
