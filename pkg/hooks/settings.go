package hooks

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// GadgetPackageSettings persists config values into a GadgetPackage's
// spec.settings. It implements SettingsWriter.
type GadgetPackageSettings struct {
	// Client writes the GadgetPackage.
	Client client.Client
	// Key names the GadgetPackage.
	Key types.NamespacedName
}

var _ SettingsWriter = GadgetPackageSettings{}

// WriteSettings replaces spec.settings with settings. The API server
// validates the object as usual; its error is returned wrapped.
func (w GadgetPackageSettings) WriteSettings(ctx context.Context, settings map[string]any) error {
	if settings == nil {
		settings = map[string]any{}
	}
	// A JSON patch "add" replaces the whole field, so keys the hook removed
	// disappear (a merge patch would keep them).
	patch, err := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/settings", "value": settings}})
	if err != nil {
		return fmt.Errorf("encode settings patch: %w", err)
	}
	obj := &gadgetpmv1alpha1.GadgetPackage{}
	obj.Namespace, obj.Name = w.Key.Namespace, w.Key.Name
	if err := w.Client.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, patch)); err != nil {
		return fmt.Errorf("patch settings of GadgetPackage %s: %w", w.Key, err)
	}
	return nil
}
