package coordinator_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/coordinator"
	"github.com/gadgetpm/gadgetpm/pkg/restmapping"
)

// discoveryCounter records the API discovery requests (GET /api, /apis
// and a group version's resource list) sent through a rest.Config.
type discoveryCounter struct {
	mu    sync.Mutex
	paths []string
}

func (c *discoveryCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && isDiscovery(r.URL.Path) {
				c.mu.Lock()
				c.paths = append(c.paths, r.URL.Path)
				c.mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

func (c *discoveryCounter) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.paths...)
}

// isDiscovery matches /api, /apis, /api/<v> and /apis/<group>/<v>.
func isDiscovery(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case parts[0] == "api":
		return len(parts) <= 2
	case parts[0] == "apis":
		return len(parts) <= 3
	}
	return false
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestServicesShareTheProcessMapper: the Helm release service, the object
// patcher, the kube event monitors and the hook host map kinds and
// discover the API through the mapper they are given, not through
// discovery clients of their own, so the process discovers the API once.
func TestServicesShareTheProcessMapper(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	repoDir := packagetest.Repo(t, dir, packagetest.Source{Name: "shared",
		Files: map[string]string{"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared-{{ .Release.Name }}\ndata:\n  a: b\n"},
		Hooks: map[string]string{"10-watch.sh": recorder("shared", journal,
			`{"configVersion":"v1","onStartup":10,"beforeHelm":10,"afterHelm":10,"kubernetes":[{"name":"cms","apiVersion":"v1","kind":"cm","namespace":{"nameSelector":{"matchNames":["`+ns+`"]}}}]}`, "")},
	})
	createRepo(t, "shared-"+ns, repoDir)

	var own, shared discoveryCounter
	mapper, err := restmapping.New(shared.wrap(env.Config))
	if err != nil {
		t.Fatal(err)
	}
	startWith(t, func(o *coordinator.Options) {
		o.Config = own.wrap(env.Config)
		o.Mapper = mapper
	})
	createPackage(t, ns, "shared", "shared-"+ns)
	waitFor(t, ns, "shared", "Running", running)
	waitForRuns(t, journal, "the cms Synchronization", func(r []run) bool {
		for _, x := range r {
			if x.binding == "cms" && x.typ == "Synchronization" {
				return true
			}
		}
		return false
	})

	if paths := own.seen(); len(paths) != 0 {
		t.Errorf("the services sent %d discovery request(s) of their own: %v; want every lookup through the shared mapper", len(paths), paths)
	}
	if len(shared.seen()) == 0 {
		t.Error("the shared mapper discovered nothing; want the services' lookups to go through it")
	}
}
