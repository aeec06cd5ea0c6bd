package datasource

import (
	"syscall"

	"golang.org/x/sys/unix"
)

//go:generate go run syscalls_gen.go

// SyscallName returns the name of syscall number n on the running
// architecture ("openat"), or "" when it has none in the table
// (zsyscalls_linux_<arch>.go, generated; other architectures have none).
func SyscallName(n uint64) string {
	return syscallNames[n]
}

// SignalName returns the name of signal n ("SIGKILL"), or "" when it has
// none (real-time signals).
func SignalName(n uint64) string {
	if n == 0 || n > 64 {
		return ""
	}
	return unix.SignalName(syscall.Signal(n))
}
