// Package scheduler decides which packages are enabled: it runs checkers in
// order (enabled flag, kubeVersion, dependency cycle, required packages),
// records the first failing reason, publishes changes as events in
// dependency order (dependents disabled first, dependencies enabled first)
// and gives the start order.
//
// It decides cluster-wide facts only. A node's kernel features are checked
// where a gadget runs (a Trace on that node says what its kernel lacks),
// and settings against the chart's values.schema.json before anything is
// installed (reason InvalidSettings); neither is an enablement input.
//
// A Scheduler starts paused: packages, states and cluster facts are
// recorded, and Resume evaluates everything. Dependency cycles are not an
// input error: the packages in a cycle stay disabled with a reason naming
// the cycle, and Order reports it.
//
// It does not start or stop packages, probe a kernel or ask the API
// server for its version; the package manager and the coordinator feed it
// those facts and act on its events.
package scheduler
