package pull

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// NamedDigests returns the digests the status of some GadgetPackage
// names, in namespaces (none: every namespace): what the package store's
// garbage collection keeps (store.CollectorOptions.Named).
func NamedDigests(reader client.Reader, namespaces ...string) func(ctx context.Context) (map[string]bool, error) {
	return func(ctx context.Context) (map[string]bool, error) {
		named := map[string]bool{}
		scopes := namespaces
		if len(scopes) == 0 {
			scopes = []string{""}
		}
		for _, ns := range scopes {
			var list v1alpha1.GadgetPackageList
			if err := reader.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return nil, fmt.Errorf("list GadgetPackages to find the digests in use: %w", err)
			}
			for i := range list.Items {
				if d := list.Items[i].Status.Digest; d != "" {
					named[d] = true
				}
			}
		}
		return named, nil
	}
}
