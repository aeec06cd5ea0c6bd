// Package scheduler decides which packages are enabled: it runs checkers in
// order (enabled flag, kubeVersion, required packages, kernel features,
// settings), records the first failing reason, publishes Enable and Disable
// events in dependency order and gives the start and teardown order.
//
// It does not start or stop packages; the package manager acts on its events.
package scheduler
