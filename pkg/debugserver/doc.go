// Package debugserver serves the operator's state on a unix socket (mode
// 0600, in a directory of mode 0700) for `gadgetpm dump` and `gadgetpm
// queue list`, and defines that state's format (Dump, PackageDump).
//
// It reads the state from a Source and writes nothing: the coordinator is
// the Source, and WithNodeRuns adds the node's gadget runs. It must not
// import the coordinator or the process runner. Access is the socket
// file's permissions; the server does not check peer credentials.
package debugserver
