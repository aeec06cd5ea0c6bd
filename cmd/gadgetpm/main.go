// Command gadgetpm is the gadget package manager: the Kubernetes operator
// and the tools around it (dev control plane, dump, repository and package
// tooling). Run `gadgetpm --help` for the subcommands.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
