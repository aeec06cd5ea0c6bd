// Command hookclient runs one hook of a package through a hook sandbox
// server, as the cluster role's operator container does with
// --hook-sandbox-socket: the same runner, run directories in its
// temporary directory. TestSandboxServerCapabilities starts it as the
// operator container's user and reads the JSON it prints.
//
//	hookclient SOCKET PACKAGE_DIR HOOK
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/gadgetpm/gadgetpm/pkg/hooks"
	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// result is what the test reads.
type result struct {
	ExitCode    int    `json:"exitCode"`
	Err         string `json:"err,omitempty"`
	ValuesPatch any    `json:"valuesPatch,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hookclient:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 4 {
		return fmt.Errorf("usage: hookclient SOCKET PACKAGE_DIR HOOK")
	}
	socket, dir, name := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	remote, err := sandbox.NewRemote(socket, nil)
	if err != nil {
		return err
	}
	hs, err := hooks.Load(ctx, dir, []string{name}, hooks.LoadOptions{Package: "caps", PackageKey: "test.caps"})
	if err != nil {
		return err
	}
	res, err := hooks.NewRunner(hooks.RunnerOptions{Sandbox: remote}).Run(ctx, hs[0], hooks.RunInput{Binding: "onStartup"})
	if err != nil {
		return err
	}
	out := result{ExitCode: res.ExitCode, ValuesPatch: res.ValuesPatch}
	if res.Err != nil {
		out.Err = res.Err.Error()
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
