// Package deps checks the requirements between installed packages: every
// gadgetpm.io/requires entry names an installed package at a satisfying
// version, and there is no cycle. It gives the start order (required
// packages first, then gadgetpm.io/order, then name) and its reverse for
// teardown, and the dependents of a package, which a deletion must wait
// for.
//
// It is a pure function of its input; the scheduler turns its verdicts
// into enablement.
package deps
