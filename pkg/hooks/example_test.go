package hooks_test

import (
	"encoding/json"
	"fmt"

	"github.com/gadgetpm/gadgetpm/kubeevents"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
)

func ExampleParseConfig() {
	cfg, err := hooks.ParseConfig("10-pods", []byte(`
configVersion: v1
kubernetes:
- name: pods
  kind: Pod
  watchEvent: [add, delete]
  jqFilter: .metadata.name
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	b := cfg.Kubernetes[0]
	fmt.Println(b.Name, b.Monitor.Kind, b.Monitor.ExecuteHookOnEvent)
	fmt.Println("synchronization:", b.Monitor.ExecuteHookOnSynchronization, "wait:", b.WaitForSynchronization)

	_, err = hooks.ParseConfig("20-bad", []byte("configVersion: v1\nschedule:\n- {name: nightly, crontab: '0 25 * * *'}"))
	fmt.Println(err != nil)
	// Output:
	// pods Pod [Added Deleted]
	// synchronization: true wait: true
	// true
}

func ExampleHook_BindingContexts() {
	cfg, _ := hooks.ParseConfig("h", []byte("configVersion: v1\nkubernetes:\n- {name: pods, kind: Pod, jqFilter: .metadata.name}"))
	h := &hooks.Hook{Name: "h", Config: cfg}
	contexts := h.BindingContexts([]hooks.Trigger{{
		Type:    hooks.Kubernetes,
		Binding: "pods",
		Event: &kubeevents.Event{
			Type:       kubeevents.TypeEvent,
			WatchEvent: kubeevents.WatchEventDeleted,
			Objects:    []kubeevents.ObjectAndFilterResult{{FilterResult: json.RawMessage(`"web-1"`)}},
		},
	}}, nil)
	out, _ := json.Marshal(contexts)
	fmt.Println(string(out))
	// Output:
	// [{"binding":"pods","type":"Event","watchEvent":"Deleted","filterResult":"web-1"}]
}
