package objectpatch_test

import (
	"fmt"

	"github.com/gadgetpm/gadgetpm/pkg/objectpatch"
)

func ExampleParseOperations() {
	ops, err := objectpatch.ParseOperations([]byte(`
operation: CreateIfNotExists
object:
  apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: gadget}
  data: {level: debug}
---
operation: MergePatch
kind: ConfigMap
namespace: gadget
name: settings
mergePatch: {data: {level: info}}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, op := range ops {
		fmt.Println(op.Index, op.Type, op.Target())
	}
	_, err = objectpatch.ParseOperations([]byte("operation: Upsert\nkind: ConfigMap\nname: a\n"))
	fmt.Println(err)
	// Output:
	// 1 CreateIfNotExists v1/ConfigMap gadget/settings
	// 2 MergePatch ConfigMap gadget/settings
	// invalid patch operation: operation 1: field operation is "Upsert": expected one of Create, CreateOrUpdate, CreateIfNotExists, Delete, DeleteInBackground, DeleteNonCascading, MergePatch, JSONPatch, JQPatch
}
