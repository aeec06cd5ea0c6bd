package pull

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// NamedDigests returns the digests the status of some GadgetPackage
// names, in every namespace reader sees: what the package store's garbage
// collection keeps (store.CollectorOptions.Named).
func NamedDigests(reader client.Reader) func(ctx context.Context) (map[string]bool, error) {
	return func(ctx context.Context) (map[string]bool, error) {
		var list v1alpha1.GadgetPackageList
		if err := reader.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("list GadgetPackages to find the digests in use: %w", err)
		}
		named := make(map[string]bool, len(list.Items))
		for i := range list.Items {
			if d := list.Items[i].Status.Digest; d != "" {
				named[d] = true
			}
		}
		return named, nil
	}
}
