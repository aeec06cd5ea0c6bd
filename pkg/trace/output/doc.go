// Package output holds the sinks a Trace's events go to, one per
// spec.outputMode:
//
//   - Status keeps the latest events as a bounded JSON array for
//     status.output (OutputStatus).
//   - ConfigMap writes each run's events into a ConfigMap owned by the Trace
//     (OutputExternalResource); PruneConfigMaps keeps spec.historyLimit of
//     them.
//   - File writes JSON lines under the node's output directory, rotating by
//     size (OutputFile).
//   - Hub serves live events over HTTP as NDJSON (OutputStream), to a
//     bounded number of clients; who may read a stream is decided in
//     front of its Handler (pkg/streamserver).
//
// Every sink implements Sink. The Trace controller (pkg/trace) creates one
// sink per run, hands it every event already encoded as one JSON object,
// and calls Close once after the last Write. Write is called from one
// goroutine at a time per sink; Stats (and Status.Result) may be called
// concurrently with Write.
//
// The package runs no gadget and reads no Trace spec: the controller maps a
// Trace to the options of the sink it needs.
package output
