package packagerepository

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
	"github.com/gadgetpm/gadgetpm/packages/repoaccess"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// ClientFor builds a chartrepo.Client for pr as policy allows: its
// transport checked and the credentials Secret of spec.secretRef read
// from the cluster resource namespace. A refusal is a *repoaccess.Error,
// returned before any Secret is read.
func ClientFor(ctx context.Context, r client.Reader, pr *v1alpha1.PackageRepository, policy repoaccess.Policy) (*chartrepo.Client, error) {
	a, err := policy.Access(ctx, r, pr)
	if err != nil {
		return nil, err
	}
	c, err := chartrepo.New(chartrepo.Options{
		URL:       pr.Spec.URL,
		CABundle:  pr.Spec.CABundle,
		Timeout:   pr.Spec.Timeout.Duration,
		PlainHTTP: a.PlainHTTP,
		Username:  a.Username,
		Password:  a.Password,
		// the size limits are the policy's, like the transport
		MaxChartBytes: policy.MaxPackageBytes, MaxIndexBytes: policy.MaxIndexBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("spec.url: %w", err)
	}
	return c, nil
}

// Keyring returns the verify mode of pr and, unless it is Never, the
// public keyring from spec.verify.keyringSecretRef, read from the cluster
// resource namespace.
func Keyring(ctx context.Context, r client.Reader, pr *v1alpha1.PackageRepository, policy repoaccess.Policy) (chartrepo.VerifyMode, []byte, error) {
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
	data, err := policy.SecretData(ctx, r, "spec.verify.keyringSecretRef", v.KeyringSecretRef, key)
	if err != nil {
		return "", nil, err
	}
	return chartrepo.VerifyMode(v.Mode), data[key], nil
}
