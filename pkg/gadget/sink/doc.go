// Package sink holds the stages that write a gadget's records out: JSON
// lines to a writer, aligned columns for terminals, and a bounded
// in-memory buffer (with a truncated flag) for a Trace's status.output.
//
// Sinks run last and never drop or change records.
package sink
