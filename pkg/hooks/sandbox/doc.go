// Package sandbox runs a package's hook, third-party code, so that it can
// neither outlive its run nor reach what the operator holds.
//
// A sandboxed run re-executes the operator's own binary (/proc/self/exe,
// argv[0] InitName) in a new PID and mount namespace. That process, the
// sandbox init, is PID 1 of the namespace: it mounts a fresh /proc, covers
// the paths the operator hides (its service-account token, the debug
// socket's directory, the package store) with empty read-only tmpfs,
// shows again only the hook's own package (read-only) and its run
// directory (writable), makes every other mount read-only, sets
// no_new_privs, and forks the hook as the hook user (no supplementary
// groups). It forwards signals to the hook, reaps every orphan as an init
// must, says on stderr what the hook left running, and exits with the
// hook's status; the kernel then kills whatever else is left in the
// namespace. The init runs from this package's init function, before
// main or TestMain, in every binary that links the package: a binary
// able to start a sandbox always answers it.
//
// Every hook process, sandboxed or not, gets SIGKILL as its parent-death
// signal, so a hook dies with the operator. The kernel sends it when the
// OS thread that forked the process exits, so Run keeps the goroutine
// that starts a process on its OS thread until the process is reaped.
//
// New checks once, at start, that the sandbox can be made here (Mode On
// fails naming the missing privilege, Mode Auto falls back to running
// hooks as today). A nil *Sandbox runs hooks without namespaces or a user
// change. A Launcher runs one command: a *Sandbox in this process, or a
// *Remote that sends it to a sandbox server (Serve, `gadgetpm
// hook-sandbox`) over a unix socket, so that a process without privileges
// can have its hooks sandboxed by one that holds them.
//
// The package imports nothing of the module and no Kubernetes library: it
// runs before everything else in a re-executed binary.
package sandbox
