package main

import (
	"strings"
	"testing"
)

// `gadgetpm operator` and `gadgetpm dev` take --default-service-account and
// say what an empty one means.
func TestDefaultServiceAccountFlag(t *testing.T) {
	for _, command := range []string{"operator", "dev"} {
		out, err := run(t, command, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"--default-service-account string", "spec.serviceAccountName", "impersonating",
			"operator's own identity", "cluster-admin-equivalent"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help lacks %q", command, w)
			}
		}
	}
}
