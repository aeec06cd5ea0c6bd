package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gadgetpm/gadgetpm/pkg/debugserver"
)

// debugSocketEnv names the environment variable that points the debug
// commands at a socket when --socket is not given.
const debugSocketEnv = "GADGETPM_DEBUG_SOCKET"

// socketFlagHelp is shared by every command that reads the debug socket.
const socketFlagHelp = "the operator's debug socket (default $" + debugSocketEnv + ", else " + debugserver.DefaultSocket + ")"

func newDumpCommand() *cobra.Command {
	var output, socket string
	cmd := &cobra.Command{
		Use:   "dump [-o yaml|json] [--socket PATH]",
		Short: "Print the running operator's whole state",
		Long: `Prints the state of the operator running on this machine, read from its
debug socket: every package with its phase, enablement and reason, version,
digest, values, hooks (bindings, last run, last error), queues and
Kubernetes subscriptions; every queue with its running, pending and failed
tasks; the cron entries; the scheduler's verdicts; and the number of
Kubernetes events waiting for delivery.

The socket is --socket, else $` + debugSocketEnv + `, else ` + debugserver.DefaultSocket + `.
Only root and the operator's own uid may read it: the socket is mode 0600,
and the operator checks the uid of every client (SO_PEERCRED) and refuses
others with "permission denied: uid N is not allowed on <socket>; run as
root or as uid M". Run the command as root or as the operator's user (in a
cluster: kubectl exec into the operator's pod).

Values whose key the package's values.schema.json marks "x-secret": true,
or whose name looks like a credential (it contains password, passwd,
secret, token, apikey, privatekey, credential or auth, ignoring case, "-"
and "_"), are shown as "<redacted>"; their keys stay.

See docs/dump.md for every field, the redaction rule and the raw endpoints.`,
		Example: `  # the operator on this node (in a cluster: kubectl exec into its pod)
  gadgetpm dump

  # the local development operator started by 'make run'
  gadgetpm dump --socket hack/dev/debug.sock

  # one package's hooks, with jq
  gadgetpm dump -o json | jq '.packages[] | select(.key == "gadget.hook-demo") | .hooks'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return fmt.Errorf("unknown output format %q for --output: use yaml or json", output)
			}
			body, err := newDebugClient(socket).get(cmd.Context(), "/dump", output)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.Flags().StringVar(&socket, "socket", "", socketFlagHelp)
	return cmd
}

// debugClient reads the debug server over its unix socket.
type debugClient struct {
	socket string
	http   *http.Client
}

// newDebugClient picks the socket: flag, else environment, else default.
func newDebugClient(flag string) *debugClient {
	socket := flag
	if socket == "" {
		socket = os.Getenv(debugSocketEnv)
	}
	if socket == "" {
		socket = debugserver.DefaultSocket
	}
	return &debugClient{
		socket: socket,
		http: &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", socket)
				},
			},
			Timeout: 30 * time.Second,
		},
	}
}

// get fetches path in format ("yaml" or "json") and returns the body of a
// 200 answer; any other answer becomes an error carrying the server's
// message.
func (c *debugClient) get(ctx context.Context, path, format string) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://gadgetpm"+path+"?format="+format, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s from the debug socket %s: %w", path, c.socket, err)
	}
	if resp.StatusCode == http.StatusForbidden {
		// The server's one-line refusal names the uid, the socket and whom
		// to run as.
		return nil, errors.New(strings.TrimSpace(string(body)))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("debug socket %s answered %s: %s", c.socket, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// dialError says why the socket did not answer and what to do about it.
func (c *debugClient) dialError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no operator is running at %s (%v): start one ('gadgetpm operator', or 'make run' for a local one), or point at its socket with --socket or $%s", c.socket, err, debugSocketEnv)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("no permission to open the debug socket %s (it is mode 0600): run as the operator's user, e.g. with sudo: %w", c.socket, err)
	case errors.Is(err, syscall.ENOTSOCK):
		return fmt.Errorf("%s is not a socket: pass the operator's debug socket with --socket or $%s", c.socket, debugSocketEnv)
	default:
		return fmt.Errorf("read the debug socket %s: %w", c.socket, err)
	}
}
