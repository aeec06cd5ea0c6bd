// Command gadgetpm is the gadget package manager: the Kubernetes operator
// and the tools around it (dev control plane, dump, repository and package
// tooling). Run `gadgetpm --help` for the subcommands.
package main

import (
	"fmt"
	"os"
)

// A re-executed hook sandbox init (argv[0] "gadgetpm-hook-sandbox") never
// gets here: package pkg/hooks/sandbox answers it from its init function,
// before most of the binary's packages are initialised (see
// docs/benchmarks.md, "The hook sandbox").
func main() {
	if err := newRootCommand(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
