package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gadgetpm/gadgetpm/internal/cmdline"
	"github.com/gadgetpm/gadgetpm/internal/devenv"
	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

func newDevCommand() *cobra.Command {
	var (
		opts      devenv.Options
		logFile   string
		logFormat *string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a complete local gadgetpm: control plane, bundled repository, operator",
		Long: `Runs gadgetpm on this machine with nothing else needed, from a gadgetpm
checkout ('make run' builds the binary and runs this):

  1. packs the bundled packages of charts/packages into a repository
  2. starts a kube-apiserver and etcd (the binaries the tests use, from
     the tool cache ~/.cache/gadgetpm; hack/setup-envtest.sh builds them first when missing, about
     ten minutes the first time) with gadgetpm's CRDs installed
  3. serves the repository over HTTP on 127.0.0.1 (a random port)
  4. writes an administrator's kubeconfig (default hack/dev/kubeconfig)
  5. creates PackageRepository "bundled", GadgetPackage
     <namespace>/<package> (default gadget/hook-demo) and the service
     account hooks run as (--hook-service-account, default gadgetpm-hooks
     in namespace default)
  6. runs the operator for this node, its debug socket at
     hack/dev/debug.sock (also when run as root, so it never takes over the
     socket of an operator installed on this machine)

then prints what to try next. Ctrl-C (or SIGTERM) stops the operator, the
repository server and the control plane within 10 seconds and exits 0.

Everything is written under --dir (default <checkout>/hack/dev), so a
non-root user can run it; loading eBPF programs still needs root. The
operator's log goes to <dir>/operator.log (--log-file - for stderr), as
text (--log-format json for JSON lines); the hooks' printed lines are in
it, and the last ones of each hook in 'gadgetpm dump'.
The API server's data lives in a temporary directory removed on stop: each
run starts from an empty cluster.`,
		Example: `  # from the checkout
  make run

  # the same, by hand, installing trace-exec instead of hook-demo
  go build -o bin/gadgetpm ./cmd/gadgetpm
  bin/gadgetpm dev --package trace-exec

  # then, in another terminal
  export KUBECONFIG=$PWD/hack/dev/kubeconfig
  kubectl get gadgetpackages -A
  bin/gadgetpm dump --socket hack/dev/debug.sock

  # serve Stream-mode Traces over TLS too (docs/trace-outputs.md, "Stream")
  bin/gadgetpm dev --package trace-exec --stream-bind-address 127.0.0.1:8443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if err := cmdline.CheckLogFormat(*logFormat); err != nil {
				return err
			}
			if err := cmdline.CheckStream(opts.Stream); err != nil {
				return err
			}
			if err := cmdline.CheckCacheGC(opts.CacheGCInterval); err != nil {
				return err
			}
			root, err := devenv.FindRoot(firstNonEmpty(opts.Root, "."))
			if err != nil {
				return err
			}
			opts.Root, opts.Out = root, out
			if logFile == "" {
				logFile = filepath.Join(firstNonEmpty(opts.Dir, devenv.DefaultDir(root)), "operator.log")
			}
			logs, closeLogs, err := openLog(logFile, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeLogs()
			if opts.Logger, err = cmdline.NewLogger(logs, *logFormat, 0); err != nil {
				return err
			}
			// The commands printed for the user name this very binary:
			// `make run` puts nothing on PATH.
			if opts.Command, err = os.Executable(); err != nil {
				return fmt.Errorf("find the gadgetpm binary to name in the commands to try: %w", err)
			}
			// The control plane's helpers log through controller-runtime's
			// root logger.
			ctrllog.SetLogger(opts.Logger)
			if logFile != "-" {
				fmt.Fprintf(out, "operator log: %s\n", logFile)
			}
			return runUntilSignal(cmd.Context(), out, func(ctx context.Context) error { return devenv.Run(ctx, opts) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Root, "root", "", "the gadgetpm checkout (default: the one holding the working directory)")
	f.StringVar(&opts.Assets, "assets", "", "directory with kube-apiserver and etcd (default $KUBEBUILDER_ASSETS, else the tool cache ($GADGETPM_BIN or ~/.cache/gadgetpm)/k8s/*, else built by hack/setup-envtest.sh)")
	f.StringVar(&opts.Dir, "dir", "", "directory for the repository, the operator's data, the log and the lock (default <checkout>/hack/dev)")
	f.StringVar(&opts.Kubeconfig, "kubeconfig-out", "", "where to write the administrator's kubeconfig (default <dir>/kubeconfig)")
	f.StringVar(&opts.DebugSocket, "debug-socket", "", "the operator's debug socket, read by 'gadgetpm dump' (default <dir>/debug.sock; - disables it)")
	f.StringVar(&opts.NodeName, "node", "", "node name the operator runs Traces for (default the host name)")
	f.StringVar(&opts.Package, "package", devenv.DefaultPackage, "bundled package (a chart under charts/packages) to install")
	f.StringVar(&opts.Namespace, "namespace", devenv.DefaultNamespace, "namespace of the GadgetPackage")
	hookCredentialFlags(cmd, &opts.HookServiceAccount, &opts.HookTokenExpiry)
	defaultServiceAccountFlag(cmd, &opts.DefaultServiceAccount)
	hookLimitFlags(cmd, &opts.HookLimits)
	repositoryFlags(cmd, &opts.RepositoryWorkers)
	f.StringVar(&logFile, "log-file", "", "file for the operator's log, - for stderr (default <dir>/operator.log)")
	hookSandboxFlags(cmd, &opts.HookSandbox, &opts.HookUser, sandbox.Auto)
	cmdline.ReferenceFlags(cmd, &opts.References)
	cmdline.DownloadFlags(cmd, &opts.Downloads)
	cmdline.HookResultSizeFlag(cmd, &opts.MaxHookResultSize, hooks.DefaultMaxResultFileBytes)
	cmdline.CacheGCFlag(cmd, &opts.CacheGCInterval)
	// Off by default: a fixed port would clash with an operator on this
	// machine.
	cmdline.StreamFlags(cmd, &opts.Stream, "0")
	logFormat = cmdline.LogFlags(cmd, cmdline.FormatText)
	return cmd
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func openLog(path string, stderr io.Writer) (io.Writer, func(), error) {
	if path == "-" {
		return stderr, func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, fmt.Errorf("open log file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open log file %s: %w (pass --log-file with a writable path, or - for stderr)", path, err)
	}
	return f, func() { _ = f.Close() }, nil
}

// runUntilSignal runs fn with a context that the first SIGINT or SIGTERM
// cancels; later signals only say that the stop is under way, so a second
// Ctrl-C never leaves the control plane's processes behind.
func runUntilSignal(parent context.Context, out io.Writer, fn func(context.Context) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case s := <-sigs:
				if n == 0 {
					fmt.Fprintf(out, "\nreceived %v: stopping everything (at most 10 seconds)\n", s)
					cancel()
				} else {
					fmt.Fprintln(out, "already stopping; please wait")
				}
			case <-done:
				return
			}
		}
	}()
	err := fn(ctx)
	close(done)
	wg.Wait()
	return err
}
