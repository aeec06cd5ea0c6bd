package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "gadgetpm",
		Short: "A package manager for eBPF observability gadgets on Kubernetes",
		Long: `gadgetpm installs gadget packages (Helm charts that also carry
shell-operator hooks and an eBPF program) from a Helm chart repository or an
OCI registry, runs their hooks in queues, applies their charts, and runs
traces on nodes on demand or on a cron schedule.

Custom resources:
  PackageRepository (gadgetpm.io/v1alpha1)   where packages come from
  GadgetPackage     (gadgetpm.io/v1alpha1)   one installed package
  Trace             (gadget.kinvolk.io/v1alpha1)  a gadget run on a node`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCommand())
	root.AddCommand(newGadgetCommand())
	root.AddCommand(newRepoCommand())
	root.AddCommand(newPackageCommand())
	root.AddCommand(newOperatorCommand())
	root.AddCommand(newHookSandboxCommand())
	root.AddCommand(newDumpCommand())
	root.AddCommand(newQueueCommand())
	root.AddCommand(newDevCommand())
	return root
}
