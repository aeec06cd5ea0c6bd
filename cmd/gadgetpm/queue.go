package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gadgetpm/gadgetpm/queue"
)

func newQueueCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Inspect the running operator's task queues",
		Long: `Reads the task queues of the operator running on this machine from its
debug socket. Every package has a main queue named after its key
(<namespace>.<name>); hooks that name a queue run in <key>/<queue>.`,
	}
	cmd.AddCommand(newQueueListCommand())
	return cmd
}

func newQueueListCommand() *cobra.Command {
	var output, socket string
	cmd := &cobra.Command{
		Use:   "list [-o table|yaml|json] [--socket PATH]",
		Short: "List the task queues with their length, running task and failures",
		Long: `Lists every live queue of the operator, read from its debug socket.

The table has one row per queue:
  NAME     the queue's name
  LENGTH   pending tasks (the running one excluded)
  RUNNING  the task its worker runs now and its attempt, or <none>
  FAILED   tasks that used up their attempts (the newest are kept)

-o yaml and -o json print every task: pending ones with their attempts,
next retry and last error, and the failed ones with their error.

The socket is --socket, else $` + debugSocketEnv + `, else the operator's default.`,
		Example: `  gadgetpm queue list
  gadgetpm queue list --socket hack/dev/debug.sock
  gadgetpm queue list -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "yaml", "json":
			default:
				return fmt.Errorf("unknown output format %q for --output: use table, yaml or json", output)
			}
			c := newDebugClient(socket)
			if output != "table" {
				body, err := c.get(cmd.Context(), "/queues", output)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(body)
				return err
			}
			body, err := c.get(cmd.Context(), "/queues", "json")
			if err != nil {
				return err
			}
			var d queue.Dump
			if err := json.Unmarshal(body, &d); err != nil {
				return fmt.Errorf("decode the queues from %s: %w", c.socket, err)
			}
			if len(d.Queues) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No queues.")
				return nil
			}
			return writeQueueTable(cmd.OutOrStdout(), d)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, yaml or json")
	cmd.Flags().StringVar(&socket, "socket", "", socketFlagHelp)
	return cmd
}

func writeQueueTable(w io.Writer, d queue.Dump) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tLENGTH\tRUNNING\tFAILED")
	for _, q := range d.Queues {
		running := "<none>"
		if q.Running != nil {
			running = q.Running.Name
			if q.Running.Attempt > 1 {
				running += " (attempt " + strconv.Itoa(q.Running.Attempt) + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", q.Name, q.Length, running, len(q.Failed))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write queue table: %w", err)
	}
	return nil
}
