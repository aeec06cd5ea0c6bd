package main

import (
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gadgetpm/gadgetpm/internal/cmdline"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// newHookSandboxCommand is the privilege-separated hook sandbox: a process
// without the operator's credentials that holds what the sandbox needs, so
// the operator's own container can drop every capability.
func newHookSandboxCommand() *cobra.Command {
	var (
		opts      sandbox.ServerOptions
		user      sandbox.User
		allow     []uint
		hide      []string
		logFormat *string
	)
	cmd := &cobra.Command{
		Use:    "hook-sandbox",
		Short:  "Run hooks in the hook sandbox for an operator started with --hook-sandbox-socket",
		Hidden: true,
		Long: `Serves hook runs on a unix socket: an operator started with
--hook-sandbox-socket sends each run (executable, arguments, environment,
package and run directory) and gets its output and exit status back; the
run happens here, in the hook sandbox (see docs/hooks.md, "Sandbox"), and
is killed when the operator closes the connection or dies. Only peers
whose uid (SO_PEERCRED) is listed in --allow-uid (default root and this
process's user) are served. Run it beside the operator, sharing the socket's directory,
the data directory and the temporary directory at the same paths, with
CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_CHOWN and CAP_DAC_OVERRIDE
(run directories change hands) and without the operator's
service-account token. SIGTERM or SIGINT kills the runs in progress and
exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cmdline.NewLogger(cmd.ErrOrStderr(), *logFormat, 0)
			if err != nil {
				return err
			}
			opts.Logger = log.WithName("hook-sandbox")
			for _, uid := range allow {
				opts.AllowUIDs = append(opts.AllowUIDs, uint32(uid))
			}
			ctx := ctrl.SetupSignalHandler()
			sb, err := sandbox.New(ctx, sandbox.Options{Mode: sandbox.On, User: user, Hide: hide, Logger: opts.Logger})
			if err != nil {
				return err
			}
			return sandbox.Serve(ctx, sb, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Socket, "socket", "", "unix socket to serve hook runs on (required)")
	user = sandbox.DefaultUser()
	f.Var(&user, "hook-user", "uid:gid hooks run as, with no supplementary groups (numbers; not root)")
	f.UintSliceVar(&allow, "allow-uid", nil, "uids of the operators allowed to run hooks here (comma-separated); default root and this process's own")
	f.StringSliceVar(&hide, "hide", nil, "more paths hooks must not see, besides the service-account directories and what the operator asks to hide (comma-separated)")
	_ = cmd.MarkFlagRequired("socket")
	logFormat = cmdline.LogFlags(cmd, cmdline.FormatJSON)
	return cmd
}
