// Package scheduler decides which packages are enabled: it runs checkers in
// order (enabled flag, kubeVersion, dependency cycle, required packages,
// kernel features, settings), records the first failing reason, publishes
// changes as events in dependency order (dependents disabled first,
// dependencies enabled first) and gives the start and teardown order.
//
// A Scheduler starts paused: packages, states and cluster facts are
// recorded, and Resume evaluates everything. Dependency cycles are not an
// input error: the packages in a cycle stay disabled with a reason naming
// the cycle, and Order reports it.
//
// It does not start or stop packages, probe the kernel or ask the API
// server for its version; the package manager and the coordinator feed it
// those facts and act on its events.
package scheduler
