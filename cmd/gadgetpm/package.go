package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/gadgetpm/gadgetpm/packages/loader"
)

// errLintFailed makes lint exit 1 after it printed the problems itself.
var errLintFailed = errors.New("lint found problems")

func newPackageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "package",
		Short: "Check gadget packages",
		Long:  `Tools for gadget packages (Helm charts with hooks/ and gadget/).`,
	}
	cmd.AddCommand(newPackageLintCommand())
	return cmd
}

func newPackageLintCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "lint DIR|TGZ",
		Short: "Run every check the operator runs when it loads a package",
		Long: `Runs every check the operator runs when it loads a package — the chart
(Chart.yaml, templates), values.schema.json and the default values against
it, gadget/gadget.yaml (unknown keys are errors), gadget/program.bpf.o (BTF
required; the catalog is derived from it), every executable under hooks/
(run with --config under a timeout; the config is checked) and the
gadgetpm.io/requires and gadgetpm.io/order annotations — and prints each
problem as FILE:LINE: MESSAGE. A .tgz is extracted with the operator's
limits first.

Exit status: 0 when the package is clean, 1 when there is any problem.`,
		Example: `  gadgetpm package lint charts/packages/trace-exec
  gadgetpm package lint out/trace-exec-1.0.0.tgz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, problems := loader.Check(cmd.Context(), args[0], loader.Options{HookTimeout: timeout})
			for _, pr := range problems {
				fmt.Fprintln(cmd.OutOrStdout(), pr.String())
			}
			if len(problems) > 0 {
				return fmt.Errorf("%s: %d problem(s): %w", args[0], len(problems), errLintFailed)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: ok (%d hook(s)", p.Name, p.Version, len(p.Hooks))
			if p.Catalog != nil {
				fmt.Fprintf(cmd.OutOrStdout(), ", %d data source(s), %d param(s)", len(p.Catalog.DataSources), len(p.Catalog.Params))
			}
			fmt.Fprintln(cmd.OutOrStdout(), ")")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "hook-timeout", loader.DefaultHookTimeout, "how long each hook's --config may run")
	return cmd
}
