// Package dump holds the parts of `gadgetpm dump`'s format that the
// cluster role's lower layers fill and the debug server prints: a hook
// with its runs and output tail (Hook, OutputLine), a kubernetes binding's
// monitor (Subscription), a hook's snapshots (Snapshots), and AnyKey, the
// wildcard of the secret value paths the dump redacts.
//
// It is a leaf: it imports nothing of the module and no Helm, so that the
// hook host (packages/hookhost) fills these types and the debug server
// (pkg/debugserver), which the node role links, prints them without
// linking the hook host, the hook protocol or Helm. The rest of the
// format (the whole Dump, a package's part) is pkg/debugserver's.
package dump
