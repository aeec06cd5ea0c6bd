// Package outbox hands values to a channel reader in order without ever
// blocking the writer: the queue service and the scheduler publish their
// events through it so that a slow reader cannot stall a queue worker or a
// caller holding the scheduler's lock. Close does not wait forever for a
// reader either: it gives up on one that has taken nothing for
// Options.Stall, so the owner's shutdown cannot hang on a reader that
// stopped reading.
//
// It does not filter, coalesce or persist values.
package outbox
