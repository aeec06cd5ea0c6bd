package debugserver

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gadgetpm/gadgetpm/pkg/dump"
)

func TestSecretKey(t *testing.T) {
	for key, want := range map[string]bool{
		"password": true, "DB_PASSWORD": true, "passwd": true, "clientSecret": true, "apiToken": true,
		"TOKEN": true, "api-key": true, "API_KEY": true, "apikey": true, "privateKey": true, "private_key": true,
		"credentials": true, "awsCredential": true, "basicAuth": true, "auth": true, "oauth": true,
		"replicas": false, "url": false, "key": false, "user": false, "username": false, "apiVersion": false,
		"keyring": false, "publicKey": false, "": false,
	} {
		if got := SecretKey(key); got != want {
			t.Errorf("SecretKey(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestRedactValues(t *testing.T) {
	anyKey := dump.AnyKey
	tests := []struct {
		name   string
		values map[string]any
		secret [][]string
		want   map[string]any
	}{
		{"nil", nil, nil, nil},
		{"by name, siblings kept", map[string]any{"password": "hunter2", "user": "bob", "replicas": 3},
			nil, map[string]any{"password": Redacted, "user": "bob", "replicas": float64(3)}},
		{"by name, nested maps and lists", map[string]any{"db": map[string]any{"host": "db", "dbPassword": "x"},
			"sinks": []any{map[string]any{"url": "u1", "api_key": "k1"}, map[string]any{"url": "u2"}}},
			nil, map[string]any{"db": map[string]any{"host": "db", "dbPassword": Redacted},
				"sinks": []any{map[string]any{"url": "u1", "api_key": Redacted}, map[string]any{"url": "u2"}}}},
		{"by name, a whole subtree", map[string]any{"auth": map[string]any{"user": "bob", "key": "k"}, "n": 1},
			nil, map[string]any{"auth": Redacted, "n": float64(1)}},
		{"numbers and booleans too", map[string]any{"pin": 1234, "token": 42, "authEnabled": true},
			nil, map[string]any{"pin": float64(1234), "token": Redacted, "authEnabled": Redacted}},
		{"unset and empty stay", map[string]any{"password": nil, "token": ""},
			nil, map[string]any{"password": nil, "token": ""}},
		{"by schema", map[string]any{"webhook": map[string]any{"url": "https://hooks.example/T0/B0/x", "method": "POST"}, "dsn": "pg://u:p@h/db"},
			[][]string{{"webhook", "url"}, {"dsn"}},
			map[string]any{"webhook": map[string]any{"url": Redacted, "method": "POST"}, "dsn": Redacted}},
		{"by schema, any key and list items", map[string]any{
			"keys":  map[string]any{"a": "ka", "b": "kb"},
			"sinks": []any{map[string]any{"dsn": "d1", "name": "one"}, map[string]any{"dsn": "d2", "name": "two"}}},
			[][]string{{"keys", anyKey}, {"sinks", anyKey, "dsn"}},
			map[string]any{"keys": map[string]any{"a": Redacted, "b": Redacted},
				"sinks": []any{map[string]any{"dsn": Redacted, "name": "one"}, map[string]any{"dsn": Redacted, "name": "two"}}}},
		{"by schema, path absent", map[string]any{"n": 1}, [][]string{{"webhook", "url"}}, map[string]any{"n": float64(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := json.Marshal(tt.values)
			got := RedactValues(tt.values, tt.secret)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("RedactValues:\n got %#v\nwant %#v", got, tt.want)
			}
			if after, _ := json.Marshal(tt.values); string(after) != string(before) {
				t.Fatalf("the input changed: %s, was %s", after, before)
			}
		})
	}
}

// TestDebugServerRedactsSecrets: whatever the source gives it, the socket
// never answers a secret value, by key name or by the schema's paths, and
// never the contents of a Secret a hook watches; keys stay.
func TestDebugServerRedactsSecrets(t *testing.T) {
	src := sampleSource()
	p := &src.dump.Packages[0]
	p.Values = map[string]any{"replicas": 3, "password": "hunter2-by-name",
		"webhook": map[string]any{"url": "https://hooks.example/by-schema", "method": "POST"}}
	p.SecretValues = [][]string{{"webhook", "url"}}
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "creds", "namespace": "gadget",
			"annotations": map[string]any{lastApplied: `{"data":{"tls.key":"c2VjcmV0LWRhdGE="}}`}},
		"data": map[string]any{"tls.key": "c2VjcmV0LWRhdGE="},
	}}
	src.snaps["gadget.hook-demo\x00watch/configmaps.sh"] = dump.Snapshots{"cms": {
		{Object: secret, FilterResult: json.RawMessage(`{"key":"c2VjcmV0LWRhdGE="}`)},
	}}
	path := filepath.Join(t.TempDir(), "debug.sock")
	startServer(t, src, path)
	c := socketClient(path)

	secrets := []string{"hunter2-by-name", "https://hooks.example/by-schema", "c2VjcmV0LWRhdGE="}
	for _, tc := range []struct {
		endpoint string
		keys     []string
	}{
		{"/dump", []string{"password: <redacted>", "url: <redacted>", "method: POST", "replicas: 3"}},
		{"/dump?format=json", []string{`"password": "<redacted>"`, `"url": "<redacted>"`}},
		{"/packages/gadget.hook-demo", []string{"password: <redacted>", "url: <redacted>", "method: POST"}},
		{"/hooks/gadget.hook-demo/watch/configmaps.sh/snapshots", []string{"tls.key: <redacted>", "name: creds", lastApplied + ": <redacted>"}},
	} {
		code, _, body := get(t, c, http.MethodGet, tc.endpoint)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", tc.endpoint, code, body)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("GET %s shows the secret %q:\n%s", tc.endpoint, s, body)
			}
		}
		for _, k := range tc.keys {
			if !strings.Contains(body, k) {
				t.Errorf("GET %s lacks %q:\n%s", tc.endpoint, k, body)
			}
		}
	}
	// The source's own copy is untouched.
	if p.Values["password"] != "hunter2-by-name" || secret.Object["data"].(map[string]any)["tls.key"] != "c2VjcmV0LWRhdGE=" {
		t.Fatal("redaction changed the source's values")
	}
}
