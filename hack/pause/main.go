// Command pause is the pod sandbox's process: it holds the pod's
// namespaces, reaps orphaned children when it is the pod's PID 1, and
// exits on SIGINT or SIGTERM. hack/image.sh packs it as the e2e cluster's
// pause image (registry.k8s.io cannot be reached from every machine).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every child that exited; a pod sharing its PID namespace
		// re-parents orphans here.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
