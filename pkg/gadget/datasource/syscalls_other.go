//go:build !(linux && (amd64 || arm64))

package datasource

// syscallNames is empty where no table is generated: syscalls show as
// numbers.
var syscallNames = map[uint64]string{}
