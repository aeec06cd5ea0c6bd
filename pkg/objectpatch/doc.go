// Package objectpatch applies the object patches hooks write to
// KUBERNETES_PATCH_PATH (Create, CreateOrUpdate, CreateIfNotExists, Delete
// and its variants, MergePatch, JSONPatch, JQPatch) through a dynamic client.
//
// It knows nothing of hooks: it takes documents and applies them.
//
// ParseOperations validates a file without touching the cluster. Patcher
// applies one: every operation is attempted, in order, even after a failure,
// and the returned error names each failed operation by index, type, kind
// and namespace/name, with the API server's message. A file that does not
// parse is rejected whole, so a half-written file changes nothing.
//
// Patcher.ForPackage gives the Patcher of one package: namespaced objects
// that name no namespace go to the package's namespace, and with a
// ServiceAccount every request acts as it (pkg/identity), so a hook's
// patches get the package's rights, not the operator's.
package objectpatch
