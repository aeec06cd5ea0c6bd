// Package identity decides whose rights a gadget package acts with, and
// says so when the API server refuses it.
//
// ServiceAccount picks the package's ServiceAccount (spec.serviceAccountName,
// else the operator's --default-service-account) or none, which means the
// operator's own identity. Impersonate turns the operator's rest.Config into
// one that acts as that ServiceAccount. AsForbidden and DescribeForbidden turn
// the API server's RBAC refusal into a ForbiddenError naming the verb, the
// resource, the namespace and who was refused, for status, Events and logs.
//
// It makes no clients, caches nothing and imports nothing of the module but
// the API types: the Helm release service, the object patcher, the kube event
// monitors and the hooks' credentials build on it.
package identity
