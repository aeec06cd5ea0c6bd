// Package filter is the gadget runtime's field filter: the "filter" param
// holds expressions such as `comm==bash`, `pid!=1`, `fname~^/etc` or
// `ret<0`, and records of a data source are kept only when every expression
// about its fields holds.
//
// It neither adds fields nor writes output.
package filter
