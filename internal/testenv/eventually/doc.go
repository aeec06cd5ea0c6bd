// Package eventually is the one way tests wait for something that happens
// asynchronously: poll a condition until it holds or a deadline passes, then
// fail with what was awaited and the last thing seen. It replaces
// hand-rolled deadline loops and fixed sleeps used as synchronisation.
//
// It imports no Kubernetes code, so tests of the generic packages (queues,
// schedulers) use it without linking the control plane's client.
package eventually
