// Package limiter ends a gadget run after a number of records
// ("max-events") or a duration ("max-duration"), whichever comes first.
// Records after the limit are dropped, so sinks never see more than asked.
//
// It does not filter by content; pkg/gadget/filter does.
package limiter
