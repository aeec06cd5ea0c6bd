package main

import (
	"strings"
	"testing"
)

// `gadgetpm operator` and `gadgetpm dev` take the stream listener's
// flags, say what each does, and refuse a cap below one naming the flag.
func TestStreamFlags(t *testing.T) {
	for _, tc := range []struct {
		command, defAddr string
		args             []string
	}{{"operator", `(default ":8443")`, []string{"--node-name", "n"}}, {"dev", `(default "0")`, []string{"--log-file", "-"}}} {
		out, err := run(t, tc.command, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"--stream-bind-address string", tc.defAddr, "SubjectAccessReview", `"0" disables it`,
			"--stream-cert-dir string", "tls.crt and tls.key", "self-signed",
			"--stream-max-clients-per-trace int", "(default 4)", "--stream-max-clients int", "(default 64)", "429 Too Many Requests"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help lacks %q", tc.command, w)
			}
		}
		_, err = run(t, append([]string{tc.command, "--stream-max-clients-per-trace", "0"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), "--stream-max-clients-per-trace 0: want at least 1") {
			t.Errorf("%s with --stream-max-clients-per-trace 0: %v", tc.command, err)
		}
	}
}
