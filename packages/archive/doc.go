// Package archive extracts package archives (gzipped tar) safely.
//
// Extract refuses absolute paths, ".." components, links of any kind
// (naming the ones that point outside the package), device files, FIFOs,
// duplicate entries, more entries than a limit and entries or totals over
// size limits — counting the bytes actually written, so a sparse or lying
// header cannot fill the disk. It keeps the executable bit (hooks need it)
// and drops setuid, setgid, sticky and group/world write bits. It writes
// into a temporary directory beside the destination and renames it into
// place, so the destination is complete or absent.
//
// It does not download, verify or load packages.
package archive
