// Command gohook is a compiled test hook speaking the shell-operator
// protocol: with --config it prints its bindings; otherwise it reports what
// it received on stdout and writes a values patch, a metric and an object
// patch, as a real Go hook would.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

const config = `{
  "configVersion": "v1",
  "onStartup": 5,
  "beforeHelm": 1,
  "schedule": [{"name": "tick", "crontab": "*/5 * * * *", "includeSnapshotsFrom": ["cms"]}],
  "kubernetes": [{"name": "cms", "apiVersion": "v1", "kind": "configmap", "jqFilter": ".data",
                  "executeHookOnEvent": ["Added", "Modified"]}]
}`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--config" {
		fmt.Println(config)
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gohook:", err)
		os.Exit(1)
	}
}

func run() error {
	raw, err := os.ReadFile(os.Getenv("BINDING_CONTEXT_PATH"))
	if err != nil {
		return err
	}
	var contexts []map[string]any
	if err := json.Unmarshal(raw, &contexts); err != nil {
		return fmt.Errorf("binding context: %w", err)
	}
	var values map[string]any
	vraw, err := os.ReadFile(os.Getenv("VALUES_PATH"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(vraw, &values); err != nil {
		return fmt.Errorf("values: %w", err)
	}
	key := ""
	for k := range values {
		if k != "global" {
			key = k
		}
	}
	fmt.Printf("contexts=%d key=%s\n", len(contexts), key)
	fmt.Printf("context=%s\n", raw)
	patch := fmt.Sprintf(`[{"op":"add","path":"/%s/runs","value":%d}]`, key, len(contexts))
	if err := os.WriteFile(os.Getenv("VALUES_JSON_PATCH_PATH"), []byte(patch), 0o600); err != nil {
		return err
	}
	metric := `{"name":"gohook_contexts","action":"add","value":` + fmt.Sprint(len(contexts)) + `,"labels":{"kind":"go"}}` + "\n"
	if err := os.WriteFile(os.Getenv("METRICS_PATH"), []byte(metric), 0o600); err != nil {
		return err
	}
	objects := `{"operation":"CreateOrUpdate","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-gohook","namespace":"default"}}}`
	return os.WriteFile(os.Getenv("KUBERNETES_PATCH_PATH"), []byte(objects), 0o600)
}
