package repoaccess

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// Condition reasons of a refused PackageRepository, on its Ready condition
// and on the GadgetPackages installing from it.
const (
	// ReasonSecretNamespaceNotAllowed: spec.secretRef or
	// spec.verify.keyringSecretRef names a namespace other than the
	// cluster resource namespace.
	ReasonSecretNamespaceNotAllowed = "SecretNamespaceNotAllowed"
	// ReasonInsecureNotAllowed: an http:// URL without spec.insecure.
	ReasonInsecureNotAllowed = "InsecureNotAllowed"
	// ReasonCredentialsOverPlainHTTP: credentials (spec.secretRef) would
	// be sent over plain HTTP.
	ReasonCredentialsOverPlainHTTP = "CredentialsOverPlainHTTP"
)

// Error is a PackageRepository spec the policy refuses. Retrying does not
// help: the repository's spec (or the operator's configuration) must
// change.
type Error struct {
	// Reason is one of the Reason constants.
	Reason string
	// Err says what was refused, naming the repository and the field.
	Err error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of a refusal in err's chain, or "".
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Policy is what the operator allows PackageRepositories. The zero value
// is not usable: ClusterResourceNamespace is required.
type Policy struct {
	// ClusterResourceNamespace is the one namespace PackageRepository
	// Secrets are read from (--cluster-resource-namespace, default the
	// operator's own): an empty secretRef namespace means it, any other
	// is refused.
	ClusterResourceNamespace string
	// MaxPackageBytes and MaxIndexBytes cap what a repository may send:
	// one package archive (an OCI chart layer, by its descriptor) and one
	// index.yaml or OCI manifest (--max-package-size, --max-index-size).
	// Zero: packages/download's defaults.
	MaxPackageBytes, MaxIndexBytes int64
}

// checkTransport refuses plain HTTP without spec.insecure and credentials
// over plain HTTP, and says whether the repository is reached over plain
// HTTP: an http:// URL, or an oci:// registry with spec.insecure.
func checkTransport(pr *v1alpha1.PackageRepository) (plainHTTP bool, err error) {
	u, err := url.Parse(pr.Spec.URL)
	if err != nil {
		return false, fmt.Errorf("spec.url: parse %q: %w", pr.Spec.URL, err)
	}
	switch u.Scheme {
	case "http":
		if !pr.Spec.Insecure {
			return false, refuse(ReasonInsecureNotAllowed, "spec.url %s is plain HTTP, which anyone on the path can read and change: use https://, or set spec.insecure: true to allow plain HTTP for this repository", u.Redacted())
		}
		plainHTTP = true
	case "oci":
		plainHTTP = pr.Spec.Insecure
	}
	if plainHTTP && pr.Spec.SecretRef != nil {
		return plainHTTP, refuse(ReasonCredentialsOverPlainHTTP, "spec.secretRef: credentials are never sent over plain HTTP, and %s is reached over plain HTTP (spec.insecure: true): serve it over HTTPS (spec.caBundle for a private CA) and drop spec.insecure, or drop spec.secretRef", u.Redacted())
	}
	return plainHTTP, nil
}

// secretNamespace returns the namespace field's Secret is read from: the
// cluster resource namespace, which ref may name or leave empty.
func (p Policy) secretNamespace(field string, ref *v1alpha1.SecretReference) (string, error) {
	if p.ClusterResourceNamespace == "" {
		return "", fmt.Errorf("%s: no cluster resource namespace to read Secrets from is configured (--cluster-resource-namespace)", field)
	}
	if ref.Namespace != "" && ref.Namespace != p.ClusterResourceNamespace {
		return "", refuse(ReasonSecretNamespaceNotAllowed, "%s.namespace is %q, but a PackageRepository is cluster-scoped and reads Secrets only from the cluster resource namespace %q (--cluster-resource-namespace): put the Secret %s there and leave %s.namespace empty or set it to %q",
			field, ref.Namespace, p.ClusterResourceNamespace, ref.Name, field, p.ClusterResourceNamespace)
	}
	return p.ClusterResourceNamespace, nil
}

// SecretData reads the Secret ref names, from the cluster resource
// namespace, and requires keys in it. field is ref's path in the
// PackageRepository's spec, for messages ("spec.secretRef"). A refused
// namespace is an *Error, and nothing is read.
func (p Policy) SecretData(ctx context.Context, r client.Reader, field string, ref *v1alpha1.SecretReference, keys ...string) (map[string][]byte, error) {
	ns, err := p.secretNamespace(field, ref)
	if err != nil {
		return nil, err
	}
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &s); err != nil {
		return nil, fmt.Errorf("%s: read Secret %s/%s: %w", field, ns, ref.Name, err)
	}
	for _, k := range keys {
		if len(s.Data[k]) == 0 {
			return nil, fmt.Errorf("%s: Secret %s/%s has no key %q", field, ns, ref.Name, k)
		}
	}
	return s.Data, nil
}

// Access is how the operator may reach a repository.
type Access struct {
	// PlainHTTP: the repository is reached without TLS (an http:// URL,
	// or an oci:// registry with spec.insecure).
	PlainHTTP bool
	// Username and Password from spec.secretRef; empty without one.
	Username, Password string
}

// Check refuses what the policy does not allow in pr's spec (its
// transport, the namespaces of its Secrets) without reading anything.
func (p Policy) Check(pr *v1alpha1.PackageRepository) error {
	_, err := p.check(pr)
	return err
}

func (p Policy) check(pr *v1alpha1.PackageRepository) (plainHTTP bool, err error) {
	if ref := pr.Spec.SecretRef; ref != nil {
		if _, err := p.secretNamespace("spec.secretRef", ref); err != nil {
			return false, err
		}
	}
	if v := pr.Spec.Verify; v != nil && v.KeyringSecretRef != nil {
		if _, err := p.secretNamespace("spec.verify.keyringSecretRef", v.KeyringSecretRef); err != nil {
			return false, err
		}
	}
	return checkTransport(pr)
}

// Access checks pr (Check), then reads its credentials: a refusal (an
// *Error) comes before any Secret is read, so refused credentials are
// never sent anywhere.
func (p Policy) Access(ctx context.Context, r client.Reader, pr *v1alpha1.PackageRepository) (Access, error) {
	plainHTTP, err := p.check(pr)
	if err != nil {
		return Access{}, err
	}
	a := Access{PlainHTTP: plainHTTP}
	if pr.Spec.SecretRef == nil {
		return a, nil
	}
	data, err := p.SecretData(ctx, r, "spec.secretRef", pr.Spec.SecretRef, "username", "password")
	if err != nil {
		return Access{}, err
	}
	a.Username, a.Password = string(data["username"]), string(data["password"])
	return a, nil
}
