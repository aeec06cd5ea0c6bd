package main

import (
	"strings"
	"testing"
)

// `gadgetpm operator` and `gadgetpm dev` take --cache-gc-interval, say
// what it keeps, and refuse an interval under a second naming the flag.
func TestCacheGCIntervalFlag(t *testing.T) {
	for _, tc := range []struct {
		command string
		args    []string
	}{{"operator", []string{"--node-name", "n"}}, {"dev", []string{"--log-file", "-"}}} {
		out, err := run(t, tc.command, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"--cache-gc-interval duration", "(default 10m0s)", "no GadgetPackage's status names", "download in flight"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help lacks %q", tc.command, w)
			}
		}
		_, err = run(t, append([]string{tc.command, "--cache-gc-interval", "0s"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), "--cache-gc-interval 0s: want at least 1s") {
			t.Errorf("%s with --cache-gc-interval 0s: %v", tc.command, err)
		}
	}
}
