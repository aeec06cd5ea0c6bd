package main

import (
	"strings"
	"testing"
)

// The operator command refuses a bad flag value before it reaches the
// cluster, naming the flag and what it accepts.
func TestOperatorRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-name", "n", "--log-format", "yaml"}, `--log-format "yaml": want "json" or "text"`},
		{[]string{"--kubeconfig", "/nonexistent", "--role", "both"}, `--role "both": want one of all, cluster, node`},
		{[]string{"--kubeconfig", "/nonexistent", "--role", "node", "--node-name", ""}, "--role=node: the node role needs the node name (--node-name"},
		{[]string{"--kubeconfig", "/nonexistent", "--node-name", "n", "--drift-interval", "-1s"}, `--drift-interval -1s: want a positive duration`},
		{[]string{"--kubeconfig", "/nonexistent", "--node-name", "n", "--repository-workers", "0"}, `invalid argument "0" for "--repository-workers" flag: want a whole number of at least 1`},
	} {
		_, err := run(t, append([]string{"operator"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("operator %v: %v, want %s", tc.args, err, tc.want)
		}
	}
}

// --help says what each role runs and that --leader-elect is on by
// default.
func TestOperatorHelpNamesRolesAndLeaderElection(t *testing.T) {
	out, err := run(t, "operator", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--role string", "both roles in one process: for a single-node cluster or trying it out", "--leader-elect", "(default true)", "--leader-election-lease-duration", "--leader-election-renew-deadline", "--leader-election-retry-period", "exits 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("operator --help lacks %q:\n%s", want, out)
		}
	}
}
