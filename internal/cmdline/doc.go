// Package cmdline holds what the command lines of the two binaries
// (cmd/gadgetpm and cmd/gadgetpm-node) share, so that their flags have one
// definition: the logger and --log-format, the connection to the cluster,
// and the node role's flags, which `gadgetpm operator` and gadgetpm-node
// both take with the same names and defaults.
//
// It parses and builds nothing else: the processes themselves are
// pkg/process and pkg/noderole. It must not import the coordinator or
// Helm, since the node binary links it.
package cmdline
