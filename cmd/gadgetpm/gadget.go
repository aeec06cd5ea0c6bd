package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gadgetpm/gadgetpm/pkg/gadget"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/datasource"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/ebpfstage"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/enricher"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/filter"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/limiter"
	"github.com/gadgetpm/gadgetpm/pkg/gadget/sink"
)

func newGadgetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gadget",
		Short: "Run a gadget on this machine, or show what it offers",
		Long: `Work with a gadget package's eBPF program directly on this machine,
without Kubernetes: for package authors and for tests.`,
	}
	cmd.AddCommand(newGadgetRunCommand(), newGadgetCatalogCommand())
	return cmd
}

type gadgetRunFlags struct {
	params    []string
	filters   []string
	timeout   time.Duration
	maxEvents uint64
	output    string
	verbose   bool
	image     imageFlags
	// cpuProfile, when set, is where a pprof CPU profile of the run goes
	cpuProfile string
}

func newGadgetRunCommand() *cobra.Command {
	var f gadgetRunFlags
	cmd := &cobra.Command{
		Use:   "run DIR|PKG.tgz|oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]",
		Short: "Load a gadget's eBPF program and print its events until stopped",
		Long: `Load gadget/program.bpf.o of a package (a directory or a .tgz made by
'helm package'), attach its programs and print every event, until Ctrl-C,
--timeout or --max-events. A snapshotter gadget prints one snapshot and
exits.

An oci:// reference is an Inspektor Gadget image: the manifest of this
machine's architecture is pulled (tag "latest" when none is given), its
program and gadget.yaml layers checked by size and digest, and the gadget
runs as a package's would. --insecure reaches the registry over plain
HTTP; --username with --password (or ` + EnvRegistryPassword + `) log in
over HTTPS. Wasm gadgets are refused.

Needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN). tracefs and bpffs are
mounted when missing. Params are the gadget's own (see 'gadgetpm gadget
catalog') plus max-events and max-duration.

Filters keep events whose fields match; several --filter flags must all hold:
  comm==bash   pid!=1   fname~^/etc   ret<0   ret==ENOENT   daddr==10.0.0.1

A summary (events, dropped, lost) goes to stderr at the end.`,
		Example: `  gadgetpm gadget run charts/packages/trace-exec
  gadgetpm gadget run charts/packages/trace-open --filter 'fname~^/etc' --param failed_only=true
  gadgetpm gadget run trace-tcpconnect-0.1.0.tgz --timeout 30s -o columns
  gadgetpm gadget run charts/packages/snapshot-process -o columns
  gadgetpm gadget run oci://ghcr.io/inspektor-gadget/gadget/trace_exec:v0.40.0
  gadgetpm gadget run oci://localhost:5000/gadgets/trace_exec:v1 --insecure`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := trimBinaryRSS(); err != nil {
				// only memory accounting is at stake: say so and go on
				fmt.Fprintln(cmd.ErrOrStderr(), "gadgetpm: warning: could not unmap unused pages of the binary:", err)
			}
			if f.cpuProfile != "" {
				stopProfile, err := startCPUProfile(f.cpuProfile)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			return runGadget(ctx, args[0], f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.params, "param", nil, "gadget param as key=value (repeatable)")
	fl.StringArrayVar(&f.filters, "filter", nil, "keep events matching EXPR, e.g. comm==bash (repeatable; all must hold)")
	fl.DurationVar(&f.timeout, "timeout", 0, "stop after this long, e.g. 10s (0: until Ctrl-C)")
	fl.Uint64Var(&f.maxEvents, "max-events", 0, "stop after this many events (0: no limit)")
	fl.StringVarP(&f.output, "output", "o", "json", "output format: json (one object per line) or columns")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log the runtime's steps to stderr")
	fl.BoolVar(&f.image.insecure, "insecure", false, "reach the registry of an oci:// image over plain HTTP (never with credentials)")
	fl.StringVar(&f.image.username, "username", "", "registry username for an oci:// image")
	fl.StringVar(&f.image.password, "password", "", "registry password for an oci:// image (default $"+EnvRegistryPassword+")")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the run to this file (for 'go tool pprof')")
	_ = fl.MarkHidden("cpuprofile") // a developer's tool, see docs/benchmarks.md
	return cmd
}

// startCPUProfile profiles the process's CPU into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}

func newRuntime(w io.Writer, format sink.Format) (*gadget.Runtime, error) {
	stages := []gadget.Stage{
		ebpfstage.New(ebpfstage.Options{}),
		enricher.New(enricher.Options{}),
		filter.Stage{},
		limiter.Stage{},
	}
	if w != nil {
		// batched writes: one write(2) per 100 ms, not one per event
		stages = append(stages, &sink.Writer{W: w, Format: format, FlushInterval: 100 * time.Millisecond})
	}
	return gadget.New(stages...)
}

func runGadget(ctx context.Context, src string, f gadgetRunFlags, stdout, stderr io.Writer) error {
	format, err := sink.ParseFormat(f.output)
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	params, err := gadget.ParseParams(f.params)
	if err != nil {
		return fmt.Errorf("--param: %w", err)
	}
	if len(f.filters) > 0 {
		escaped := make([]string, len(f.filters))
		for i, e := range f.filters {
			escaped[i] = strings.ReplaceAll(e, ",", `\,`)
		}
		params[filter.ParamFilter] = strings.Join(escaped, ",")
	}
	if f.maxEvents > 0 {
		params[limiter.ParamMaxEvents] = fmt.Sprint(f.maxEvents)
	}
	if f.timeout < 0 {
		return fmt.Errorf("--timeout %s: must not be negative", f.timeout)
	}
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	if strings.HasPrefix(src, "oci://") {
		dir, remove, err := pullImage(ctx, src, f.image, stderr)
		if err != nil {
			return err
		}
		defer remove()
		src = dir
	}
	g, err := gadget.ReadGadget(src)
	if err != nil {
		return err
	}
	rt, err := newRuntime(stdout, format)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fmt.Fprintf(stderr, "gadgetpm: running gadget %s (Ctrl-C to stop)\n", g.Name)
	res, err := rt.Run(ctx, g, gadget.RunOptions{Params: params, Logger: logger})
	if res != nil {
		for name, st := range res.Stats {
			if err != nil && st == (datasource.Stats{}) {
				continue // it never ran: the error says why
			}
			fmt.Fprintf(stderr, "gadgetpm: %s: %d events, %d dropped by filters or limits, %d lost\n", name, st.Emitted, st.Dropped, st.Lost)
			if st.Lost > 0 {
				fmt.Fprintf(stderr, "gadgetpm: %s lost events: the ring buffer was full; filter in the kernel with --param, or make the gadget's ring buffer larger\n", name)
			}
		}
	}
	if err != nil && errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w\nrun it as root (sudo gadgetpm gadget run ...)", err)
	}
	return err
}

func newGadgetCatalogCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "catalog DIR|PKG.tgz",
		Short: "Print a gadget's data sources, fields and params as JSON",
		Long: `Read gadget/program.bpf.o and gadget/gadget.yaml of a package and print what
the gadget offers: its data sources with their fields and types, and its
params with types and defaults. Nothing is loaded into the kernel; no
privileges are needed.`,
		Example: `  gadgetpm gadget catalog charts/packages/trace-open`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := gadget.ReadGadget(args[0])
			if err != nil {
				return err
			}
			cat, err := ebpfstage.Catalog(g.Object, g.Metadata)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(cat)
		},
	}
}
