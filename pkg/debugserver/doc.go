// Package debugserver serves the operator's state on a unix socket (mode
// 0600, in a directory of mode 0700) for `gadgetpm dump` and `gadgetpm
// queue list`, and defines that state's format (Dump, PackageDump).
//
// It reads the state from a Source and writes nothing: the coordinator is
// the Source, and WithNodeRuns adds the node's gadget runs; the node role
// alone (pkg/noderole) serves NoPackages with its runs. It must not import
// the coordinator or the process runner, and, since every node links it,
// nothing that links Helm, the hook protocol, the loader or the hook host:
// the types those fill are pkg/dump's.
//
// Two locks guard the socket: its file mode keeps out whoever cannot open
// it, and the server checks each peer's uid (SO_PEERCRED) and answers only
// root and its own uid, so a mode loosened by a mount, a chmod or a shared
// directory never opens the dump to others (hooks run under another uid).
// Values in the dump are redacted by Redact before they are written.
package debugserver
