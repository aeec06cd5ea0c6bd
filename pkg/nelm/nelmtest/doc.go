// Package nelmtest gives tests plain Helm SDK access to a cluster, as
// someone running the helm CLI by hand would have, to make and inspect
// releases behind pkg/nelm's back, and ServiceAccounts with namespaced
// rights (ServiceAccount, Grant) for a package to act as.
package nelmtest
