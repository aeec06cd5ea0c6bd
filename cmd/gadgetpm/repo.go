package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gadgetpm/gadgetpm/packages/chartrepo"
)

func newRepoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Build gadget package repositories",
		Long: `Tools for gadget package repositories: a Helm chart repository (index.yaml
beside the .tgz archives) that gadgetpm, and stock Helm, read.`,
	}
	cmd.AddCommand(newRepoBuildCommand())
	return cmd
}

func newRepoBuildCommand() *cobra.Command {
	var out, baseURL string
	cmd := &cobra.Command{
		Use:   "build SRC_DIR -o OUT_DIR [--url BASE]",
		Short: "Pack package sources into .tgz archives and write index.yaml",
		Long: `Packs every package source under SRC_DIR (a directory holding Chart.yaml;
SRC_DIR itself, or one or two levels below it) into OUT_DIR as
<name>-<version>.tgz and writes OUT_DIR/index.yaml with the sha256 digest of
every archive in OUT_DIR, the way 'helm package' and 'helm repo index' do:
stock Helm reads the result. Unlike 'helm package', file modes are kept, so
hooks stay executable. Archives are byte-for-byte reproducible.

Serve OUT_DIR over HTTP(S), or point a PackageRepository at file://OUT_DIR.`,
		Example: `  gadgetpm repo build charts/packages -o /srv/gadgets
  gadgetpm repo build ./my-gadget -o out --url https://charts.example.com/gadgets`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--output is required: the directory to write the archives and index.yaml to")
			}
			built, err := chartrepo.Build(cmd.Context(), args[0], out, chartrepo.BuildOptions{BaseURL: baseURL, Progress: cmd.OutOrStdout()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d package(s) and %s/index.yaml\n", len(built), out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory to write the archives and index.yaml to (required; created when missing)")
	cmd.Flags().StringVar(&baseURL, "url", "", "base URL written in front of every archive in index.yaml (default: relative URLs)")
	return cmd
}
