package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gadgetpm/gadgetpm/internal/version"
)

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the versions of gadgetpm and of the libraries it is built with",
		Long: `Print gadgetpm's version and commit, the Go toolchain it was built with,
and the versions of the Helm SDK, the Kubernetes client (client-go),
controller-runtime and cilium/ebpf linked into the binary.`,
		Example: `  gadgetpm version
  gadgetpm version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			case "text", "":
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintf(w, "gadgetpm:\t%s\n", info.Version)
				fmt.Fprintf(w, "commit:\t%s\n", info.Commit)
				fmt.Fprintf(w, "go:\t%s %s\n", info.Go, info.Platform)
				fmt.Fprintf(w, "helm sdk:\t%s\n", info.Helm)
				fmt.Fprintf(w, "kubernetes client:\t%s\n", info.Kubernetes)
				fmt.Fprintf(w, "controller-runtime:\t%s\n", info.ControllerRuntime)
				fmt.Fprintf(w, "cilium/ebpf:\t%s\n", info.CiliumEBPF)
				return w.Flush()
			default:
				return fmt.Errorf("unknown output format %q for --output: use text or json", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
