package apis

import (
	"reflect"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// ShardKey is the label that puts a PackageRepository, a GadgetPackage or
// a Trace in a shard: a gadgetpm instance started with
// --watch-label-selector=sharding.gadgetpm.io/key=<shard> reconciles only
// the objects of its shard (docs/operator.md, "Several instances in one
// cluster"), as Flux's sharding.fluxcd.io/key does.
const ShardKey = "sharding.gadgetpm.io/key"

// ShardCache limits o's cache of GadgetPackages, PackageRepositories and
// Traces to the objects selector matches, keeping what o already sets
// for them (transforms). The other kinds stay unfiltered: packages'
// charts and hooks see the cluster as it is.
func ShardCache(o *cache.Options, selector labels.Selector) {
	by := make(map[client.Object]cache.ByObject, len(o.ByObject)+3)
	for k, v := range o.ByObject {
		by[k] = v
	}
	for _, obj := range []client.Object{&gadgetpmv1alpha1.GadgetPackage{}, &gadgetpmv1alpha1.PackageRepository{}, &gadgetv1alpha1.Trace{}} {
		// the map's keys are pointers: find the one of obj's type
		key := client.Object(obj)
		for k := range by {
			if reflect.TypeOf(k) == reflect.TypeOf(obj) {
				key = k
			}
		}
		v := by[key]
		v.Label = selector
		by[key] = v
	}
	o.ByObject = by
}
