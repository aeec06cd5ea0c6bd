package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	helmvalues "helm.sh/helm/v3/pkg/cli/values"

	"github.com/gadgetpm/gadgetpm/packages/loader"
	"github.com/gadgetpm/gadgetpm/pkg/nelm"
)

// defaultKubeVersion is the Kubernetes version lint and render render for
// when --kube-version is not given: the one gadgetpm is tested against.
const defaultKubeVersion = "v1.36.3"

// errLintFailed makes lint exit 1 after it printed the problems itself.
var errLintFailed = errors.New("lint found problems")

func newPackageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "package",
		Short: "Check and render gadget packages",
		Long:  `Tools for gadget packages (Helm charts with hooks/ and gadget/).`,
	}
	cmd.AddCommand(newPackageLintCommand(), newPackageRenderCommand())
	return cmd
}

func newPackageLintCommand() *cobra.Command {
	var timeout time.Duration
	var kubeVersion string
	cmd := &cobra.Command{
		Use:   "lint DIR|TGZ",
		Short: "Run every check the operator runs when it loads a package, and render its templates",
		Long: `Runs every check the operator runs when it loads a package — the chart
(Chart.yaml, templates), values.schema.json and the default values against
it, gadget/gadget.yaml (unknown keys are errors), gadget/program.bpf.o (BTF
required; the catalog is derived from it), every executable under hooks/
(run with --config under a timeout; the config is checked) and the
gadgetpm.io/requires and gadgetpm.io/order annotations — then renders the
chart's templates with the default values, as the operator would install
them, and prints each problem as FILE:LINE: MESSAGE (a template error names
its template file and line). A .tgz is extracted with the operator's limits
first.

Exit status: 0 when the package is clean, 1 when there is any problem.`,
		Example: `  gadgetpm package lint charts/packages/trace-exec
  gadgetpm package lint out/trace-exec-1.0.0.tgz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, problems := loader.Check(cmd.Context(), args[0], loader.Options{HookTimeout: timeout})
			problems = append(problems, renderProblems(p, problems, kubeVersion)...)
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
	cmd.Flags().StringVar(&kubeVersion, "kube-version", defaultKubeVersion, "Kubernetes version the templates are rendered for (checked against Chart.yaml's kubeVersion)")
	return cmd
}

// renderProblems renders p's chart with its default values and reports a
// failure as a problem at the template file and line it names. It renders
// nothing when the chart did not load or its Chart.yaml, values or schema
// already have problems (they would fail the render for the same reason).
func renderProblems(p *loader.Package, found []loader.Problem, kubeVersion string) []loader.Problem {
	if p == nil || p.Chart == nil {
		return nil
	}
	for _, pr := range found {
		switch pr.File {
		case "", loader.ChartFile, "values.yaml", loader.SchemaFile:
			return nil
		}
	}
	_, err := nelm.Render(p.Chart, nil, nelm.RenderOptions{KubeVersion: kubeVersion})
	if err == nil {
		return nil
	}
	pr := loader.Problem{Message: "render with the default values: " + err.Error()}
	if file, line, ok := nelm.TemplateLocation(err); ok {
		pr.File, pr.Line = file, line
	}
	return []loader.Problem{pr}
}

func newPackageRenderCommand() *cobra.Command {
	var (
		sets, files            []string
		kubeVersion, namespace string
		releaseName            string
		timeout                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "render DIR|TGZ [--set KEY=VALUE]... [-f VALUES.yaml]...",
		Short: "Print the manifests a package's chart renders to, without a cluster",
		Long: `Loads the package as the operator does (every check of 'gadgetpm package
lint' except the template rendering; a package with problems is not
rendered), merges the settings given with -f and --set over the chart's
values.yaml, checks them against values.schema.json, and prints the
rendered manifests as a YAML stream, followed by the chart's Helm hook
manifests. Nothing contacts a cluster: the templates see the Kubernetes
version of --kube-version and Helm's built-in API versions. Files under
gadget/ are hidden from templates, the same as when the operator installs
the package.

Settings: -f reads a YAML file of values (repeatable; later files win);
--set sets one value with Helm's syntax (a.b=1, list={x,y}; repeatable;
applied after the files). They are what a GadgetPackage's spec.settings
holds.

Errors name the template file and line, or the value that fails
values.schema.json. Exit status: 0 when the chart rendered, 1 otherwise.`,
		Example: `  gadgetpm package render charts/packages/trace-exec
  gadgetpm package render out/trace-exec-1.0.0.tgz --set maxRows=10
  gadgetpm package render ./my-gadget -f my-settings.yaml --kube-version v1.30.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := loader.Load(cmd.Context(), args[0], loader.Options{HookTimeout: timeout})
			if err != nil {
				return err
			}
			values, err := (&helmvalues.Options{ValueFiles: files, Values: sets}).MergeValues(nil)
			if err != nil {
				return fmt.Errorf("read settings: %w", err)
			}
			r, err := nelm.Render(p.Chart, values, nelm.RenderOptions{
				Namespace: namespace, ReleaseName: releaseName, KubeVersion: kubeVersion,
			})
			if err != nil {
				return err
			}
			return writeRendered(cmd.OutOrStdout(), r)
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "set a value, KEY=VALUE in Helm's syntax (repeatable)")
	cmd.Flags().StringArrayVarP(&files, "values", "f", nil, "a YAML file of values (repeatable; later ones win)")
	cmd.Flags().StringVar(&kubeVersion, "kube-version", defaultKubeVersion, "Kubernetes version to render for (checked against Chart.yaml's kubeVersion)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of the release (the GadgetPackage's)")
	cmd.Flags().StringVar(&releaseName, "release-name", "", "release name (the GadgetPackage's name); default the chart's name")
	cmd.Flags().DurationVar(&timeout, "hook-timeout", loader.DefaultHookTimeout, "how long each hook's --config may run while the package loads")
	return cmd
}

// writeRendered prints the manifest, then each hook manifest under a
// "# Source:" line, in path order.
func writeRendered(w io.Writer, r *nelm.Rendered) error {
	var b strings.Builder
	b.WriteString(r.Manifest)
	paths := make([]string, 0, len(r.Hooks))
	for p := range r.Hooks {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s", p, r.Hooks[p])
	}
	if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
