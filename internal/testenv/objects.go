package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
)

// Repository creates a PackageRepository named <prefix>-<n>
// (<prefix>-<shard>-<n> on a shared control plane) with spec, deleted when t ends, and
// returns its name. PackageRepositories are cluster-scoped, so the prefix
// keeps test packages apart.
func (e *Env) Repository(t testing.TB, prefix string, spec v1alpha1.PackageRepositorySpec) string {
	t.Helper()
	n := e.seq.Add(1)
	name := fmt.Sprintf("%s-%d", prefix, n)
	if e.Shard != "" {
		name = fmt.Sprintf("%s-%s-%d", prefix, e.Shard, n)
	}
	pr := &v1alpha1.PackageRepository{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Client.Create(ctx, pr); err != nil {
		t.Fatalf("create PackageRepository %s: %v", name, err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), pr) })
	return name
}
