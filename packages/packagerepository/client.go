package packagerepository

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// ClientFor builds a chartrepo.Client for pr, reading the credentials Secret
// when spec.secretRef names one. plainHTTP talks plain HTTP to an oci://
// registry (local registries and tests).
func ClientFor(ctx context.Context, r client.Reader, pr *v1alpha1.PackageRepository, plainHTTP bool) (*chartrepo.Client, error) {
	opts := chartrepo.Options{
		URL:       pr.Spec.URL,
		CABundle:  pr.Spec.CABundle,
		Timeout:   pr.Spec.Timeout.Duration,
		PlainHTTP: plainHTTP,
	}
	if ref := pr.Spec.SecretRef; ref != nil {
		data, err := secretData(ctx, r, ref, "username", "password")
		if err != nil {
			return nil, fmt.Errorf("spec.secretRef: %w", err)
		}
		opts.Username, opts.Password = string(data["username"]), string(data["password"])
	}
	c, err := chartrepo.New(opts)
	if err != nil {
		return nil, fmt.Errorf("spec.url: %w", err)
	}
	return c, nil
}

// Keyring returns the verify mode of pr and, unless it is Never, the
// public keyring from spec.verify.keyringSecretRef.
func Keyring(ctx context.Context, r client.Reader, pr *v1alpha1.PackageRepository) (chartrepo.VerifyMode, []byte, error) {
	v := pr.Spec.Verify
	if v == nil || v.Mode == "" || v.Mode == v1alpha1.VerifyNever {
		return chartrepo.VerifyNever, nil, nil
	}
	if v.KeyringSecretRef == nil {
		return "", nil, fmt.Errorf("spec.verify.keyringSecretRef is required when mode is %s", v.Mode)
	}
	key := v.Key
	if key == "" {
		key = "pubring.gpg"
	}
	data, err := secretData(ctx, r, v.KeyringSecretRef, key)
	if err != nil {
		return "", nil, fmt.Errorf("spec.verify.keyringSecretRef: %w", err)
	}
	return chartrepo.VerifyMode(v.Mode), data[key], nil
}

func secretData(ctx context.Context, r client.Reader, ref *v1alpha1.SecretReference, keys ...string) (map[string][]byte, error) {
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &s); err != nil {
		return nil, fmt.Errorf("read Secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	for _, k := range keys {
		if len(s.Data[k]) == 0 {
			return nil, fmt.Errorf("Secret %s/%s has no key %q", ref.Namespace, ref.Name, k)
		}
	}
	return s.Data, nil
}
