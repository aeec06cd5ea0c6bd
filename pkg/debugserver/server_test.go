package debugserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gadgetpm/gadgetpm/pkg/dump"
	"github.com/gadgetpm/gadgetpm/queue"
)

// fakeSource is the debug server's consumer interface as a plain struct.
type fakeSource struct {
	dump  Dump
	snaps map[string]dump.Snapshots // by "<key>\x00<hook>"
}

func (f *fakeSource) Dump() Dump { return f.dump }

func (f *fakeSource) Package(key string) (PackageDump, bool) {
	for _, p := range f.dump.Packages {
		if p.Key == key {
			return p, true
		}
	}
	return PackageDump{}, false
}

func (f *fakeSource) HookSnapshots(key, hook string) (dump.Snapshots, bool) {
	s, ok := f.snaps[key+"\x00"+hook]
	return s, ok
}

func sampleSource() *fakeSource {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "cm", "namespace": "gadget"},
	}}
	return &fakeSource{
		dump: Dump{
			Time: at,
			Packages: []PackageDump{{
				Key: "gadget.hook-demo", Package: "hook-demo", Phase: "Running", Enabled: true,
				Version: "1.0", Digest: "sha256:abc", HelmRevision: 2,
				Values: map[string]any{"replicas": float64(3), "mode": "yes", "tag": "007"},
				Hooks: []dump.Hook{
					{Name: "startup.sh", Bindings: []string{"onStartup"}, LastRun: &at, Runs: 1},
					{Name: "watch/configmaps.sh", Bindings: []string{"kubernetes:cms"}, LastError: "exit status 1", Runs: 4},
				},
				Queues:        []string{"gadget.hook-demo", "gadget.hook-demo/watch"},
				Subscriptions: []dump.Subscription{{Monitor: "gadget.hook-demo/watch/configmaps.sh/cms", Hook: "watch/configmaps.sh", Binding: "cms", APIVersion: "v1", Kind: "ConfigMap", Synced: true, Objects: 1}},
			}},
			Queues: queue.Dump{Queues: []queue.QueueDump{
				{Name: "gadget.hook-demo", Length: 1,
					Running: &queue.RunningTask{Name: "HelmUpgrade", Since: at, Attempt: 2},
					Pending: []queue.PendingTask{{Name: "HookRun startup.sh", EnqueuedAt: at, Attempts: 1, LastError: "boom"}}},
				{Name: "gadget.hook-demo/watch", Failed: []queue.FailedTask{{Name: "HookRun", EnqueuedAt: at, FailedAt: at, Attempts: 5, Error: "exit status 1"}}},
			}},
			PendingKubeEvents: 3,
		},
		snaps: map[string]dump.Snapshots{
			"gadget.hook-demo\x00watch/configmaps.sh": {"cms": {{Object: obj, FilterResult: json.RawMessage(`{"name":"cm"}`)}}},
			"gadget.hook-demo\x00startup.sh":          nil,
		},
	}
}

// startServer runs a debug server on a socket under a fresh directory and
// waits until it answers.
func startServer(t *testing.T, src Source, path string) (stop func() error) {
	t.Helper()
	return startServerWith(t, Options{Path: path, Source: src})
}

// startServerWith is startServer with all the options.
func startServerWith(t *testing.T, opts Options) (stop func() error) {
	t.Helper()
	path := opts.Path
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			_ = c.Close()
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("debug server stopped before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("debug server on %s did not answer within 10s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("debug server did not stop within 10s")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func socketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, method, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://gadgetpm"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestDebugServerSocketLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "gadgetpm") // missing directories
	path := filepath.Join(dir, "debug.sock")
	stop := startServer(t, sampleSource(), path)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is %v, want a socket", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %o, want 600", perm)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory: %v, mode %v; want created with 0700", err, di.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("socket directory holds %d entries, want only the socket (no temporary left)", len(entries))
	}

	if err := stop(); err != nil {
		t.Fatalf("Start returned %v after its context ended, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still present after shutdown: %v", err)
	}
}

func TestDebugServerReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "debug.sock")
	// A socket file nobody listens on, as a killed process leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	_ = ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	startServer(t, sampleSource(), path)
	code, _, _ := get(t, socketClient(path), http.MethodGet, "/dump")
	if code != http.StatusOK {
		t.Fatalf("GET /dump on the replaced socket: status %d", code)
	}
}

func TestDebugServerRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "debug.sock")
	first := sampleSource()
	startServer(t, first, path)

	second, err := New(Options{Path: path, Source: &fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = second.Start(ctx)
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second server on a live socket: %v, want ErrSocketInUse", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another server is listening") {
		t.Fatalf("error %q does not name the socket and the reason", err)
	}
	// The first server keeps its socket and answers.
	_, _, body := get(t, socketClient(path), http.MethodGet, "/dump?format=json")
	var d Dump
	if err := json.Unmarshal([]byte(body), &d); err != nil || len(d.Packages) != 1 {
		t.Fatalf("first server after the refused start: %v, %d packages", err, len(d.Packages))
	}
}

func TestDebugServerRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "debug.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Path: path, Source: &fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("Start on a regular file: %v, want an error saying it is not a socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Fatalf("the regular file was changed: %q", b)
	}
}

func TestNewDebugServerRejectsBadOptions(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 120) + ".sock"
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no source", Options{Path: "/tmp/x.sock"}, "Source is required"},
		{"path too long", Options{Path: long, Source: &fakeSource{}}, "at most 107"},
		{"directory path", Options{Path: "/tmp/dir/", Source: &fakeSource{}}, "names a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	srv, err := New(Options{Source: &fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Path() != DefaultSocket || srv.NeedLeaderElection() {
		t.Fatalf("defaults: path %s, leader election %v", srv.Path(), srv.NeedLeaderElection())
	}
}

func TestDebugServerStartsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "debug.sock")
	srv, err := New(Options{Path: path, Source: &fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("first Start with an ended context: %v", err)
	}
	if err := srv.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded, want an error")
	}
}

// yamlToJSON lets YAML answers be compared with the source's values.
func decodeYAML(t *testing.T, body string, into any) {
	t.Helper()
	js, err := sigsyaml.YAMLToJSON([]byte(body))
	if err != nil {
		t.Fatalf("answer is not valid YAML: %v\n%s", err, body)
	}
	if err := json.Unmarshal(js, into); err != nil {
		t.Fatalf("decode YAML answer: %v\n%s", err, body)
	}
}

func TestDebugServerEndpoints(t *testing.T) {
	src := sampleSource()
	path := filepath.Join(t.TempDir(), "debug.sock")
	startServer(t, src, path)
	c := socketClient(path)

	decodeBoth := func(t *testing.T, endpoint string, yamlInto, jsonInto any) {
		t.Helper()
		code, h, body := get(t, c, http.MethodGet, endpoint)
		if code != http.StatusOK || h.Get("Content-Type") != "application/yaml" {
			t.Fatalf("GET %s: %d %s\n%s", endpoint, code, h.Get("Content-Type"), body)
		}
		if strings.Contains(body, "{") && !strings.Contains(endpoint, "hooks") {
			t.Fatalf("GET %s: YAML is not block style:\n%s", endpoint, body)
		}
		decodeYAML(t, body, yamlInto)
		sep := "?"
		if strings.Contains(endpoint, "?") {
			sep = "&"
		}
		code, h, body = get(t, c, http.MethodGet, endpoint+sep+"format=json")
		if code != http.StatusOK || h.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s as JSON: %d %s\n%s", endpoint, code, h.Get("Content-Type"), body)
		}
		if err := json.Unmarshal([]byte(body), jsonInto); err != nil {
			t.Fatalf("GET %s as JSON: %v\n%s", endpoint, err, body)
		}
	}

	t.Run("dump", func(t *testing.T) {
		var y, j Dump
		decodeBoth(t, "/dump", &y, &j)
		for name, got := range map[string]Dump{"yaml": y, "json": j} {
			if !reflect.DeepEqual(got, src.dump) {
				t.Errorf("%s dump differs from the source:\n got %+v\nwant %+v", name, got, src.dump)
			}
		}
	})
	t.Run("queues", func(t *testing.T) {
		var y, j queue.Dump
		decodeBoth(t, "/queues", &y, &j)
		if !reflect.DeepEqual(y, src.dump.Queues) || !reflect.DeepEqual(j, src.dump.Queues) {
			t.Errorf("queues differ from the source:\nyaml %+v\njson %+v\nwant %+v", y, j, src.dump.Queues)
		}
	})
	t.Run("package", func(t *testing.T) {
		var y, j PackageDump
		decodeBoth(t, "/packages/gadget.hook-demo", &y, &j)
		if !reflect.DeepEqual(y, src.dump.Packages[0]) || !reflect.DeepEqual(j, src.dump.Packages[0]) {
			t.Errorf("package differs from the source:\nyaml %+v\njson %+v", y, j)
		}
	})
	t.Run("snapshots of a hook whose name holds a slash", func(t *testing.T) {
		var y, j map[string][]dump.Object
		decodeBoth(t, "/hooks/gadget.hook-demo/watch/configmaps.sh/snapshots", &y, &j)
		for name, got := range map[string]map[string][]dump.Object{"yaml": y, "json": j} {
			objs := got["cms"]
			if len(objs) != 1 || objs[0].Object.GetName() != "cm" || objs[0].Object.GetKind() != "ConfigMap" {
				t.Fatalf("%s snapshots: %+v", name, got)
			}
			var fr map[string]string
			if err := json.Unmarshal(objs[0].FilterResult, &fr); err != nil || fr["name"] != "cm" {
				t.Fatalf("%s filter result %s: %v", name, objs[0].FilterResult, err)
			}
		}
	})
	t.Run("snapshots of a hook without kubernetes bindings", func(t *testing.T) {
		code, _, body := get(t, c, http.MethodGet, "/hooks/gadget.hook-demo/startup.sh/snapshots?format=json")
		if code != http.StatusOK || strings.TrimSpace(body) != "{}" {
			t.Fatalf("got %d %q, want 200 {}", code, body)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		code, _, body := get(t, c, http.MethodHead, "/dump")
		if code != http.StatusOK || body != "" {
			t.Fatalf("HEAD /dump: %d with %d bytes", code, len(body))
		}
	})

	for _, tc := range []struct {
		name, method, path string
		code               int
		want               []string
	}{
		{"unknown package", "GET", "/packages/gadget.nope", 404, []string{`"gadget.nope"`, "gadgetpm dump"}},
		{"empty package key", "GET", "/packages/", 404, []string{"/packages/<namespace>.<name>"}},
		{"unknown package of a hook", "GET", "/hooks/gadget.nope/x.sh/snapshots", 404, []string{`"gadget.nope"`, "gadgetpm dump"}},
		{"unknown hook", "GET", "/hooks/gadget.hook-demo/nope.sh/snapshots", 404, []string{`"nope.sh"`, "startup.sh, watch/configmaps.sh"}},
		{"hooks path without snapshots", "GET", "/hooks/gadget.hook-demo/startup.sh", 404, []string{"/hooks/<key>/<hook>/snapshots"}},
		{"unknown endpoint", "GET", "/metrics", 404, []string{"/metrics", "/dump", "/queues"}},
		{"bad format", "GET", "/dump?format=xml", 400, []string{`"xml"`, "yaml", "json"}},
		{"POST", "POST", "/dump", 405, []string{"POST", "GET"}},
		{"DELETE a package", "DELETE", "/packages/gadget.hook-demo", 405, []string{"DELETE", "read-only"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := get(t, c, tc.method, tc.path)
			if code != tc.code {
				t.Fatalf("%s %s: status %d, want %d (%s)", tc.method, tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s %s: body %q lacks %q", tc.method, tc.path, body, w)
				}
			}
			if code == 405 && h.Get("Allow") != "GET, HEAD" {
				t.Errorf("405 without Allow: GET, HEAD (got %q)", h.Get("Allow"))
			}
		})
	}
}

func TestMarshalYAMLKeepsStringsStrings(t *testing.T) {
	in := map[string]any{"a": "yes", "o": "On", "y": "y", "b": "007", "c": "1.0", "d": "true", "e": "null", "f": "", "g": "2026-01-02", "h": "a: b", "n": 1.5, "list": []any{}}
	out, err := MarshalYAML(in)
	if err != nil {
		t.Fatal(err)
	}
	// A YAML 1.2 reader (yaml.v3) and a YAML 1.1 one (sigs.k8s.io/yaml,
	// as kubectl reads) must both get the strings back.
	var back, back11 map[string]any
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := sigsyaml.Unmarshal(out, &back11); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for k, v := range in {
		if s, ok := v.(string); ok && back11[k] != s {
			t.Errorf("%s: a YAML 1.1 reader got %T:%v, want the string %q\n%s", k, back11[k], back11[k], s, out)
		}
		got := fmt.Sprintf("%T:%v", back[k], back[k])
		want := fmt.Sprintf("%T:%v", v, v)
		if k == "list" {
			want = "[]interface {}:[]"
		}
		if got != want {
			t.Errorf("%s: round trip gave %s, want %s\n%s", k, got, want, out)
		}
	}
}
