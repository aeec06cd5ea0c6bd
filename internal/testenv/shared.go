package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gadgetpm/gadgetpm/pkg/apis"
	gadgetv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadget/v1alpha1"
	gadgetpmv1alpha1 "github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// SharedKubeconfigEnv names the environment variable that points test
// binaries at a control plane started once for a whole run
// (hack/test-controlplane.sh, which make test runs go test under). With
// it set, Start starts nothing: it reaches that control plane, whose CRDs
// are installed, and puts the binary's objects in a shard of their own.
const SharedKubeconfigEnv = "GADGETPM_TEST_KUBECONFIG"

// sharedConfig reads the shared control plane's kubeconfig; nil when
// SharedKubeconfigEnv is unset.
func sharedConfig() (*rest.Config, error) {
	path := os.Getenv(SharedKubeconfigEnv)
	if path == "" {
		return nil, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: read the shared control plane's kubeconfig: %w (unset it to start a control plane for this binary)", SharedKubeconfigEnv, path, err)
	}
	return cfg, nil
}

// newShard names a shard no other binary of the run has: it labels the
// binary's gadgetpm objects (apis.ShardKey) and prefixes its namespaces.
func newShard() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("name the test shard: %w", err)
	}
	return "t" + hex.EncodeToString(b), nil
}

// WatchLabelSelector is the --watch-label-selector an operator a test
// starts needs to reconcile this binary's objects and no other's: ""
// with a control plane of the binary's own.
func (e *Env) WatchLabelSelector() string {
	if e.Shard == "" {
		return ""
	}
	return apis.ShardKey + "=" + e.Shard
}

// ShardArgs are the flags an operator binary a test runs (gadgetpm
// operator, gadgetpm-node) needs to reconcile this binary's objects only:
// none with a control plane of the binary's own.
func (e *Env) ShardArgs() []string {
	if e.Shard == "" {
		return nil
	}
	return []string{"--watch-label-selector", e.WatchLabelSelector()}
}

// CacheOptions returns o with the cache of GadgetPackages,
// PackageRepositories and Traces limited to this binary's shard, for a
// controller manager a test builds itself (the operator does the same
// with --watch-label-selector).
func (e *Env) CacheOptions(o cache.Options) cache.Options {
	if e.Shard == "" {
		return o
	}
	apis.ShardCache(&o, labels.SelectorFromSet(labels.Set{apis.ShardKey: e.Shard}))
	return o
}

// shardClient labels every gadgetpm object it creates with the shard, so
// that the tests' operators (started with the shard's selector) see it
// and those of the other binaries sharing the control plane do not.
type shardClient struct {
	client.Client
	shard string
}

func (c shardClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if isGadgetpm(c.Scheme(), obj) {
		l := obj.GetLabels()
		if _, set := l[apis.ShardKey]; !set {
			if l == nil {
				l = map[string]string{}
			}
			l[apis.ShardKey] = c.shard
			obj.SetLabels(l)
		}
	}
	return c.Client.Create(ctx, obj, opts...)
}

// isGadgetpm says whether obj is of one of gadgetpm's API groups.
func isGadgetpm(s *runtime.Scheme, obj client.Object) bool {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Group == "" {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil || len(gvks) == 0 {
			return false
		}
		gvk = gvks[0]
	}
	return gvk.Group == gadgetpmv1alpha1.GroupVersion.Group || gvk.Group == gadgetv1alpha1.GroupVersion.Group
}
