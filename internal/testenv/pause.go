package testenv

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// PauseAPIServer freezes the control plane's kube-apiserver with SIGSTOP,
// as a hung or overloaded server looks to its clients: connections stay
// open and requests get no answer (unlike a closed port, which fails
// them at once). It returns resume, which sends SIGCONT; resume is safe
// to call twice, and the test's cleanup calls it in any case, so a failed
// test never leaves the shared server frozen.
//
// The server is shared by every test of the binary: only a test that
// does not call t.Parallel may pause it (Go runs parallel tests after
// the sequential ones, so none of them is running then). It must be the
// binary's own (testenv.Main with OwnControlPlane), never the control
// plane a run shares between binaries.
func (e *Env) PauseAPIServer(t testing.TB) (resume func()) {
	t.Helper()
	if e.Shard != "" {
		t.Fatalf("pause the API server: it is the control plane the run's test binaries share (%s); pass testenv.OwnControlPlane() to testenv.Main in this package's TestMain", SharedKubeconfigEnv)
	}
	pid, err := e.apiServerPID()
	if err != nil {
		t.Fatalf("pause the API server: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("pause the API server (pid %d): %v", pid, err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resume the API server (pid %d): %v", pid, err)
			}
		})
	}
	t.Cleanup(resume)
	return resume
}

// apiServerPID finds the kube-apiserver this process started: envtest
// keeps its process private, so it is the child of this process whose
// command line serves the port of e.Config.Host.
func (e *Env) apiServerPID() (int, error) {
	u, err := url.Parse(e.Config.Host)
	if err != nil {
		return 0, fmt.Errorf("API server address %q: %w", e.Config.Host, err)
	}
	port := u.Port()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	for _, path := range procs {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil || parentPID(pid) != self {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "kube-apiserver" {
			continue
		}
		for i, a := range args {
			if a == "--secure-port="+port || (a == "--secure-port" && i+1 < len(args) && args[i+1] == port) {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no kube-apiserver child of process %d serves port %s", self, port)
}

// parentPID reads a process's parent from /proc/<pid>/stat (the field
// after the parenthesised command name, which may hold spaces), or -1.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}
