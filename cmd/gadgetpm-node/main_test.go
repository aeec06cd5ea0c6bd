package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
	"github.com/gadgetpm/gadgetpm/pkg/noderole/noderoletest"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	testenv.Main(m, &env)
}

// gadgetpm-node refuses to run without a node name or with a bad log
// format, naming the flag.
func TestNodeBinaryRefusesBadFlags(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--node-name"},
		{[]string{"--node-name", "n", "--log-format", "xml"}, `--log-format "xml"`},
	} {
		var out bytes.Buffer
		cmd := newCommand(&out, &out, ctrl.SetLogger)
		cmd.SetArgs(tc.args)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("gadgetpm-node %v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// gadgetpm-node runs the node role: its node's Traces get its answer
// (here: their gadget names no package), and it stops cleanly when its
// context ends.
func TestNodeBinaryRunsTheNodeRole(t *testing.T) {
	ns := env.Namespace(t)
	var out bytes.Buffer
	cmd := newCommand(&out, &out, ctrl.SetLogger)
	cmd.SetArgs([]string{"--kubeconfig", env.WriteKubeconfig(t), "--node-name", "node-a", "--node-check=false",
		"--namespaces", ns, "--data-dir", t.TempDir(), "--metrics-bind-address", "0", "--health-probe-bind-address", "0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(cancel)

	noderoletest.RequireAnswer(t, env.Client, ns, "node-a")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("gadgetpm-node after stop: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gadgetpm-node did not stop within 30s")
	}
	if strings.Contains(out.String(), `"level":"error"`) {
		t.Errorf("gadgetpm-node logged an error:\n%s", out.String())
	}
}
