// Package datasource holds a gadget's data sources: named streams of
// fixed-size records (events of a tracer, entries of a snapshot), their typed
// fields, the handlers subscribed to them in priority order, and the text
// and JSON encodings of a record.
//
// A record is one byte buffer laid out like the eBPF program's event struct,
// followed by the fields stages add (an enricher's container id); every
// field has a fixed offset and size, so the hot path copies bytes into a
// reused Record and never allocates per event.
//
// It does not load eBPF objects (pkg/gadget/ebpfstage does) nor decide
// what subscribers do with records.
package datasource
