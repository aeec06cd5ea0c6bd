package main

import (
	"strings"
	"testing"
)

// `gadgetpm operator` and `gadgetpm dev` give hooks credentials of their
// own by default, and say how to go back to the operator's.
func TestHookCredentialFlags(t *testing.T) {
	for _, command := range []string{"operator", "dev"} {
		out, err := run(t, command, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{`--hook-service-account string`, `(default "gadgetpm-hooks")`, "serviceaccounts/token", `"" gives hooks the operator's own`,
			"--hook-token-expiry duration", "(default 10m0s)", "80%"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help lacks %q", command, w)
			}
		}
	}
}
