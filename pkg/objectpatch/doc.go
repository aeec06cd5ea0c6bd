// Package objectpatch applies the object patches hooks write to
// KUBERNETES_PATCH_PATH (Create, CreateOrUpdate, CreateIfNotExists, Delete
// and its variants, MergePatch, JSONPatch, JQPatch) through a dynamic client.
//
// It knows nothing of hooks or packages: it takes documents and applies them.
package objectpatch
