// Package nelmtest gives tests plain Helm SDK access to a cluster, as
// someone running the helm CLI by hand would have, to make and inspect
// releases behind pkg/nelm's back.
package nelmtest
