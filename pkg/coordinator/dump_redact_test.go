package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/packages/packagetest"
	"github.com/gadgetpm/gadgetpm/pkg/apis/gadgetpm/v1alpha1"
	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
)

// secretSchema marks webhook.url secret: its name does not look like a
// credential, only the schema says it is one.
const secretSchema = `{"type": "object", "properties": {
  "webhook": {"type": "object", "properties": {
    "url": {"type": "string", "x-secret": true},
    "method": {"type": "string"}}},
  "password": {"type": "string"},
  "replicas": {"type": "integer"}}}`

// TestDumpRedactsSecretValues: installed packages, with hooks (values from
// the hook host) and without (values from the package manager), whose
// schema marks webhook.url secret and whose values hold a password: the
// dump read through the debug socket shows neither value, but shows both
// keys and the values around them.
func TestDumpRedactsSecretValues(t *testing.T) {
	ns := env.Namespace(t)
	dir := t.TempDir()
	values := "password: default-pass-by-name\nwebhook:\n  method: POST\nreplicas: 2\n"
	repoDir := packagetest.Repo(t, dir,
		packagetest.Source{Name: "with-hooks", Schema: secretSchema, Values: values},
		packagetest.Source{Name: "no-hooks", Schema: secretSchema, Values: values, Hooks: map[string]string{}})
	createRepo(t, "redact-"+ns, repoDir)
	op, _, _ := start(t)

	sock := filepath.Join(dir, "debug.sock")
	srv, err := debugserver.New(debugserver.Options{Path: sock, Source: op})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("debug server: %v", err)
		}
	})

	secrets := map[string]string{}
	for _, name := range []string{"with-hooks", "no-hooks"} {
		secrets[name+" webhook.url"] = "https://hooks.example/T0/" + name + "-by-schema"
		secrets[name+" password"] = name + "-settings-pass-by-name"
		settings := fmt.Sprintf(`{"webhook": {"url": %q}, "password": %q}`, secrets[name+" webhook.url"], secrets[name+" password"])
		gp := &v1alpha1.GadgetPackage{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.GadgetPackageSpec{Repository: "redact-" + ns, Package: name, Version: "*",
				Settings: &apiextensionsv1.JSON{Raw: []byte(settings)}}}
		if err := env.Client.Create(context.Background(), gp); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"with-hooks", "no-hooks"} {
		waitFor(t, ns, name, "Running", running)
	}

	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	dump := eventually.Value(t, 10*time.Second, "the dump from "+sock, func() (string, error) {
		resp, err := c.Get("http://gadgetpm/dump")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), err
	})
	for what, s := range secrets {
		if strings.Contains(dump, s) {
			t.Errorf("the dump shows %s (%q)", what, s)
		}
	}
	var d debugserver.Dump
	if err := sigsyaml.Unmarshal([]byte(dump), &d); err != nil {
		t.Fatalf("the dump is not YAML: %v", err)
	}
	for _, name := range []string{"with-hooks", "no-hooks"} {
		want := map[string]any{"password": debugserver.Redacted, "replicas": float64(2),
			"webhook": map[string]any{"url": debugserver.Redacted, "method": "POST"}}
		var got map[string]any
		for _, p := range d.Packages {
			if p.Key == ns+"."+name {
				got = p.Values
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("values of %s in the dump: %v, want %v", name, got, want)
		}
	}
	if t.Failed() {
		t.Logf("dump:\n%s", dump)
	}
}
